"""503s that clear by themselves tell the client when to try again (`retry-after`): the global
pause, no router able to serve (pool drained, routers down). Refusals a wait does not fix don't."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from ops import services as ops_services
from pools.services import pool_set_status
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import dead_url

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Are you there?"}]


def chat(secret: str, model: str = seeding.MODEL):
    return Client().post(
        "/v1/chat/completions",
        data=json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 4}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def anthropic_messages(secret: str):
    return Client().post(
        "/v1/messages",
        data=json.dumps({"model": seeding.MODEL, "messages": MESSAGES, "max_tokens": 4}),
        content_type="application/json",
        HTTP_X_API_KEY=secret,
    )


def test_a_global_pause_answers_503_with_retry_after_30_seconds(
    router_url, django_capture_on_commit_callbacks
):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    with django_capture_on_commit_callbacks(execute=True):
        ops_services.access_pause(
            message="Back at 14:00 UTC.", actor=None, reason="maintenance", now=timezone.now()
        )

    response = chat(tenant.secret)

    error = assert_stable_error(
        response, status=503, code="access_paused", type_="service_unavailable"
    )
    assert error["message"] == "Back at 14:00 UTC."
    assert response["retry-after"] == "30"


def test_the_anthropic_endpoint_sends_the_same_retry_after(
    router_url, django_capture_on_commit_callbacks
):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    with django_capture_on_commit_callbacks(execute=True):
        ops_services.access_pause(message="", actor=None, reason="maintenance", now=timezone.now())

    response = anthropic_messages(tenant.secret)

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    assert response["retry-after"] == "30"


def test_a_drained_pool_answers_no_healthy_router_with_the_breaker_cooldown(
    router_url, settings, django_capture_on_commit_callbacks
):
    settings.BREAKER_COOLDOWN_MS = 12_500
    catalog = seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    with django_capture_on_commit_callbacks(execute=True):
        pool_set_status(pool=catalog.pool, status="draining")

    response = chat(tenant.secret)

    assert_stable_error(response, status=503, code="no_healthy_router", type_="service_unavailable")
    assert response["retry-after"] == "13"


def test_routers_that_do_not_answer_give_no_healthy_router_with_retry_after(settings):
    settings.BREAKER_COOLDOWN_MS = 30_000
    seeding.catalog(router_urls=[dead_url()])
    tenant = seeding.tenant()

    response = chat(tenant.secret)

    assert_stable_error(response, status=503, code="no_healthy_router")
    assert response["retry-after"] == "30"


def test_a_refusal_that_waiting_does_not_fix_has_no_retry_after(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()

    response = chat(tenant.secret, model="no-such-model")

    assert_stable_error(response, status=404, code="model_not_found")
    assert not response.has_header("retry-after")
