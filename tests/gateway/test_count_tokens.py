"""`POST /v1/messages/count_tokens`: the prompt estimate the gateway reserves with, for a key
that may use the model; nothing spent, billed or logged; errors in Anthropic's shape."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from gateway.templates import render_prompt
from gateway.tokens import estimate_tokens
from metering.models import RequestLog, UsageEvent
from tests.factories import seeding
from tests.support.errors import assert_anthropic_error

pytestmark = pytest.mark.django_db

SYSTEM = "Answer in one word."
TURNS = [
    {"role": "user", "content": "Pick a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one?"},
]
MESSAGES = [
    *TURNS[:2],
    {"role": "user", "content": [{"type": "text", "text": "Another one?"}]},
]  # a block list too


def post(path: str, secret: str | None, body: dict):
    headers = {"HTTP_X_API_KEY": secret} if secret else {}
    return Client().post(path, data=json.dumps(body), content_type="application/json", **headers)


def count(secret: str | None, **body):
    return post(
        "/v1/messages/count_tokens", secret, {"model": seeding.MODEL, "messages": MESSAGES, **body}
    )


def test_count_is_the_rendered_prompt_the_router_is_sent_and_bills(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    rendered = render_prompt("chatml", TURNS, SYSTEM)  # the route's template

    counted = count(tenant.secret, system=SYSTEM)
    by_alias = count(tenant.secret, system=SYSTEM, model=seeding.ALIAS)
    answer = post(
        "/v1/messages",
        tenant.secret,
        {"model": seeding.MODEL, "max_tokens": 8, "system": SYSTEM, "messages": MESSAGES},
    )

    assert counted.status_code == 200, counted.content
    assert counted.json() == by_alias.json() == {"input_tokens": estimate_tokens(rendered)}
    # The simulated router counts what it was sent the same way: the count is what the answer bills.
    assert answer.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]
    assert (
        RequestLog.objects.count() == UsageEvent.objects.count() == 1
    )  # the answer's, not the counts'


def test_counting_spends_no_limit(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant(
        on_plan=seeding.plan("one-a-week", weekly_requests=1, requests_per_minute=1)
    )

    for _ in range(3):
        assert count(tenant.secret).status_code == 200

    answer = post(
        "/v1/messages",
        tenant.secret,
        {"model": seeding.MODEL, "max_tokens": 8, "messages": MESSAGES},
    )
    assert answer.status_code == 200, answer.content


def test_a_model_the_key_may_not_use_or_that_does_not_exist_is_not_found(router_url):
    seeding.catalog(router_urls=[router_url])
    seeding.catalog(router_urls=[router_url], model="other-model", aliases=(), pool="other-pool")
    restricted = seeding.tenant(allowed_models=["other-model"])

    for model in (seeding.MODEL, seeding.ALIAS, "no-such-model"):
        message = assert_anthropic_error(
            count(restricted.secret, model=model), 404, "not_found_error"
        )
        assert model in message
    assert count(restricted.secret, model="other-model").status_code == 200


def test_keys_and_bodies_are_checked_with_anthropic_errors(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()

    assert_anthropic_error(count(None), 401, "authentication_error")
    assert_anthropic_error(count("ctr_live_" + "D" * 43), 401, "authentication_error")
    message = assert_anthropic_error(
        post("/v1/messages/count_tokens", tenant.secret, {"model": seeding.MODEL}),
        400,
        "invalid_request_error",
    )
    assert "messages" in message
    assert_anthropic_error(
        Client().get("/v1/messages/count_tokens", HTTP_X_API_KEY=tenant.secret),
        405,
        "invalid_request_error",
    )
    assert not RequestLog.objects.exists()
