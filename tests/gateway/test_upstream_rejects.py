"""A router that answers "bad request" (400, 413, 422) blames the request: the client gets a 400
SDKs do not retry, no other router is tried, and nothing of the router's answer leaks."""

from __future__ import annotations

import json

import pytest
import requests
from django.test import Client

from metering.models import RequestLog, UsageEvent
from pools.simulator import start_in_thread
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Is this request any good?"}]


@pytest.fixture
def routers():
    """`routers(n, **knobs) -> [base_url]`: simulators on threads, stopped after the test."""
    stops = []

    def start(count: int, **knobs) -> list[str]:
        urls = []
        for _ in range(count):
            url, stop = start_in_thread(quiet=True, **knobs)
            stops.append(stop)
            urls.append(url)
        return urls

    yield start
    for stop in stops:
        stop()


def post(path: str, secret: str, body: dict):
    return Client().post(
        path,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def completions(urls: list[str]) -> int:
    return sum(requests.get(f"{url}/_sim/stats", timeout=5).json()["completions"] for url in urls)


@pytest.mark.parametrize("router_status", [400, 413, 422])
def test_a_router_4xx_is_a_400_upstream_rejected_request_tried_once(routers, router_status):
    urls = routers(2, failure_rate=1.0, fail_status=router_status)
    seeding.catalog(router_urls=urls)
    tenant = seeding.tenant()
    body = {"model": seeding.MODEL, "messages": MESSAGES}

    whole = post("/v1/chat/completions", tenant.secret, body)
    streamed = post("/v1/chat/completions", tenant.secret, {**body, "stream": True})

    for response in (whole, streamed):
        error = assert_stable_error(
            response,
            status=400,
            code="upstream_rejected_request",
            type_="invalid_request_error",
            param=None,
        )
        assert error["message"].startswith(
            f"The model backend rejected the request as invalid (HTTP {router_status})."
        )
        text = response.content.decode()
        assert "simulated router failure" not in text and "127.0.0.1" not in text
        log = RequestLog.objects.get(request_id=response["x-request-id"])
        assert (log.status_code, log.error_code) == (400, "upstream_rejected_request")
    assert completions(urls) == 2  # one router each: the request's fault, no failover
    assert not UsageEvent.objects.exists()


def test_anthropic_clients_get_an_invalid_request_error(routers):
    seeding.catalog(router_urls=routers(1, failure_rate=1.0, fail_status=422))
    tenant = seeding.tenant()

    response = post(
        "/v1/messages",
        tenant.secret,
        {"model": seeding.MODEL, "max_tokens": 16, "messages": MESSAGES},
    )

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(
        "The model backend rejected the request as invalid (HTTP 422)."
    )


def test_a_router_5xx_still_fails_over_and_then_answers_503(routers):
    urls = routers(2, failure_rate=1.0, fail_status=500)
    seeding.catalog(router_urls=urls)
    tenant = seeding.tenant()

    response = post(
        "/v1/chat/completions", tenant.secret, {"model": seeding.MODEL, "messages": MESSAGES}
    )

    assert_stable_error(response, status=503, code="no_healthy_router")
    assert completions(urls) == 2  # both tried
