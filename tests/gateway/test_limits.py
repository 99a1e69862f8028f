"""Rate limits and the allowance, in process: what one request costs, whatever else happened."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from gateway.templates import render_prompt
from gateway.tokens import estimate_tokens
from metering.models import UsageEvent
from pools.catalog import catalog_bump_version
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Count me once."}]


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


def test_a_request_larger_than_tokens_per_minute_is_refused_for_good_and_spends_nothing(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant(on_plan=seeding.plan("small-tpm", tokens_per_minute=100))
    prompt = estimate_tokens(render_prompt("chatml", MESSAGES))

    response = chat(tenant.secret, max_tokens=200)

    error = assert_stable_error(
        response, status=429, code="rate_limit_exceeded", type_="rate_limit_error"
    )
    assert error["message"] == (
        f"This request needs {prompt + 200} tokens (prompt {prompt} + max_tokens 200), more than this plan's"
        " limit of 100 tokens per minute; lower max_tokens or shorten the prompt."
    )
    assert response["x-should-retry"] == "false"
    assert not response.has_header("retry-after") and not response.has_header("retry-after-ms")
    assert response["x-ratelimit-limit-tokens"] == "100"
    assert response["x-ratelimit-remaining-tokens"] == "100"
    assert not UsageEvent.objects.exists()
    fits = chat(tenant.secret, max_tokens=100 - prompt)
    assert fits.status_code == 200, fits.content
