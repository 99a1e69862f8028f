"""Rate limits and the allowance, in process: what one request costs, whatever else happened."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from metering.models import UsageEvent
from pools.catalog import catalog_bump_version
from pools.simulator import start_in_thread
from tests.e2e import seeding

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Count me once."}]


@pytest.fixture
def router_url():
    url, stop = start_in_thread(quiet=True)
    yield url
    stop()


def chat(secret: str, **body):
    return Client().post(
        "/v1/chat/completions",
        data=json.dumps({"model": seeding.MODEL, "messages": MESSAGES, "max_tokens": 4, **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def remaining_requests(response) -> int:
    assert response.status_code == 200, response.content
    return int(response["x-ratelimit-remaining-requests"])


def test_a_request_after_a_catalog_change_counts_once_against_requests_per_minute(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant(on_plan=seeding.plan("five", requests_per_minute=5))

    first = remaining_requests(chat(tenant.secret))
    catalog_bump_version()  # e.g. a pool drained: every process reloads its catalog
    second = remaining_requests(chat(tenant.secret))
    third = remaining_requests(chat(tenant.secret))

    assert (first, second, third) == (4, 3, 2)


def test_the_limit_admits_exactly_its_requests_across_catalog_changes(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant(on_plan=seeding.plan("three", requests_per_minute=3))

    statuses = []
    for _ in range(5):
        catalog_bump_version()
        statuses.append(chat(tenant.secret).status_code)

    assert statuses == [200, 200, 200, 429, 429]
    assert UsageEvent.objects.count() == 3
