"""`GET /v1/models` reads the key from fast state as admission does (no Postgres once its
auth context is cached) and counts one request against the key's requests per minute; a
global pause stops inference, not the listing."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from ops import services as ops_services
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

ROUTER = "http://127.0.0.1:9"  # never called


def models(secret: str):
    return Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_a_listing_counts_against_requests_per_minute():
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant(on_plan=seeding.plan("three-a-minute", requests_per_minute=3))

    assert [models(tenant.secret).status_code for _ in range(3)] == [200, 200, 200]
    refused = models(tenant.secret)
    assert refused.status_code == 429
    assert_stable_error(refused.json(), code="rate_limit_exceeded")
    assert int(refused["retry-after"]) >= 1


def test_a_warm_listing_reads_no_postgres(django_assert_num_queries):
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant()
    assert models(tenant.secret).status_code == 200  # loads the auth context and the catalog

    with django_assert_num_queries(0):
        response = models(tenant.secret)
    assert response.status_code == 200
    assert seeding.MODEL in {m["id"] for m in response.json()["data"]}


def test_a_pause_stops_inference_not_the_listing(django_capture_on_commit_callbacks):
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant()
    with django_capture_on_commit_callbacks(execute=True):
        ops_services.access_pause(
            actor=None, message="Back soon.", reason="maintenance", now=timezone.now()
        )
    assert models(tenant.secret).status_code == 200
    chat = Client().post(
        "/v1/chat/completions",
        data={"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tenant.secret}",
    )
    assert chat.status_code == 503
