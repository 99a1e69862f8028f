"""Routing against live routers: failover, the circuit breaker, draining, mid-stream failures."""

from __future__ import annotations

import json
import time

import pytest
import requests

from infra import fastkeys
from metering.models import RequestLog, UsageEvent
from pools.services import pool_set_status
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import dead_url
from tests.support.wire import eventually, sse_events, stream_payloads

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MESSAGES = [{"role": "user", "content": "Route me somewhere healthy."}]


def chat(server, secret: str, *, stream: bool = False, **body) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        json={"model": seeding.MODEL, "messages": MESSAGES, "stream": stream, **body},
        headers={"Authorization": f"Bearer {secret}"},
        stream=stream,
        timeout=30,
    )


def assert_answered(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        payloads = stream_payloads(response)
        assert payloads[-1] == "[DONE]", payloads
        assert not any(isinstance(p, dict) and "error" in p for p in payloads)
    else:
        assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("failure", ["port closed", "answers 500", "times out"])
def test_every_request_is_answered_by_the_healthy_router(failure, simulators, gateway):
    good, bad = simulators(2)
    server = gateway(
        ROUTER_READ_TIMEOUT="1", ROUTER_FIRST_BYTE_TIMEOUT="1", BREAKER_FAILURE_THRESHOLD="3"
    )
    broken_url = bad.url
    if failure == "port closed":
        broken_url = dead_url()
    elif failure == "answers 500":
        bad.configure(failure_rate=1.0)
    else:
        bad.configure(latency_ms=2500)
    # Weighted 9:1 towards the broken router, so it is picked first nearly every time.
    catalog = seeding.catalog(router_urls=[broken_url, good.url], weights=(9, 1))
    tenant = seeding.tenant()

    for i in range(8):
        assert_answered(chat(server, tenant.secret, stream=i % 2 == 1))

    assert good.completions() == 8
    if failure != "port closed":
        assert 1 <= bad.completions() <= 3  # tried, then its breaker (threshold 3) kept it out
    good_router = catalog.routers[1].pk
    logs = eventually(
        lambda: list(RequestLog.objects.all()) if RequestLog.objects.count() == 8 else None
    )
    assert {(log.status_code, log.router_id) for log in logs} == {(200, good_router)}
    assert eventually(lambda: UsageEvent.objects.count() == 8)


def test_breaker_opens_after_the_threshold_and_recovers_after_the_cool_down(
    simulators, gateway, fast_state
):
    cool_down_ms = 1000
    good, bad = simulators(2)
    bad.configure(failure_rate=1.0)
    server = gateway(BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN_MS=str(cool_down_ms))
    catalog = seeding.catalog(router_urls=[bad.url, good.url])
    tenant = seeding.tenant()
    breaker = fastkeys.BREAKER(router_id=catalog.routers[0].pk)

    def opened_ms() -> int:
        return int(fast_state.hget(breaker, "opened") or 0)

    for _ in range(60):  # each request tries the bad router at most once, then fails over
        assert_answered(chat(server, tenant.secret))
        if bad.completions() >= 2:
            break
    assert bad.completions() == 2
    assert fast_state.hget(breaker, "state") == b"open"
    opened = opened_ms()

    # While it is open, no request reaches the failing router (judged by when the gateway
    # admitted each request, so a slow machine cannot blur the cool-down's edge).
    window = []
    while time.time() * 1000 < opened + cool_down_ms * 0.6:
        response = chat(server, tenant.secret)
        assert_answered(response)
        window.append(response.headers["x-request-id"])
    admitted = {
        log.request_id: log.created_at.timestamp() * 1000
        for log in RequestLog.objects.filter(request_id__in=window)
    }
    inside = {rid for rid, at in admitted.items() if at < opened + cool_down_ms}
    assert inside, "no request was admitted inside the cool-down"
    assert not inside & set(bad.stats()["client_references"]), (
        "an open breaker sent traffic to the failing router"
    )

    bad.configure(failure_rate=0.0)
    for _ in range(100):  # after the cool-down a probe finds it healthy and the breaker closes
        time.sleep(max(0.0, (opened_ms() + cool_down_ms - time.time() * 1000) / 1000))
        assert_answered(chat(server, tenant.secret))
        if not fast_state.exists(breaker):  # closed: a success deletes the breaker's record
            break
    assert not fast_state.exists(breaker)
    served_before = bad.completions() - bad.stats()["failures_injected"]

    for _ in range(20):
        assert_answered(chat(server, tenant.secret))
    assert bad.completions() - bad.stats()["failures_injected"] - served_before >= 3, (
        "traffic returns to it"
    )


def _read_until_content(lines) -> list[str]:
    """Lines of a chat stream up to and including its first content event."""
    seen = []
    for line in lines:
        seen.append(line)
        if '"content":"' in line and '"content":""' not in line:
            break
    return seen


def test_draining_the_only_pool_refuses_new_requests_and_finishes_streams_in_flight(
    simulators, gateway
):
    (router,) = simulators(1, tokens_per_second=20, completion_tokens=20)  # a one-second stream
    server = gateway()
    catalog = seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()

    in_flight = chat(server, tenant.secret, stream=True, stream_options={"include_usage": True})
    assert in_flight.status_code == 200
    lines = in_flight.iter_lines(decode_unicode=True)
    head = _read_until_content(lines)
    pool_set_status(pool=catalog.pool, status="draining")
    refused = chat(server, tenant.secret)
    rest = list(lines)

    assert refused.status_code == 503
    assert_stable_error(refused.json(), code="no_healthy_router")
    events = [data for _, data in sse_events(head + rest)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text) == 20 * 4
    assert chunks[-1]["usage"]["completion_tokens"] == 20
    assert router.completions() == 1  # the refused request never reached it
    event = eventually(lambda: UsageEvent.objects.first())
    assert event.completion_tokens == 20 and not event.estimated


def test_draining_one_pool_sends_new_requests_to_the_next(simulators, gateway):
    first, second = simulators(2)
    server = gateway()
    primary = seeding.catalog(router_urls=[first.url], pool="primary", priority=10)
    seeding.catalog(router_urls=[second.url], pool="secondary", priority=20)
    tenant = seeding.tenant()

    for _ in range(3):
        assert_answered(chat(server, tenant.secret))
    pool_set_status(pool=primary.pool, status="draining")
    for i in range(4):
        assert_answered(chat(server, tenant.secret, stream=i % 2 == 1))

    assert (first.completions(), second.completions()) == (3, 4)


def test_router_failing_mid_stream_ends_it_with_one_error_event_and_bills_what_was_served(
    simulators, gateway
):
    (router,) = simulators(1, disconnect_after_tokens=5)
    server = gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()

    response = chat(server, tenant.secret, stream=True, stream_options={"include_usage": True})
    payloads = stream_payloads(response)

    assert response.status_code == 200
    errors = [p for p in payloads if isinstance(p, dict) and "error" in p]
    assert len(errors) == 1 and payloads[-1] is errors[0]
    assert_stable_error(errors[0], code="upstream_error")
    assert "[DONE]" not in payloads
    served = "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p["choices"]
    )
    assert len(served) == 5 * 4
    assert router.stats()["streams_dropped"] == 1
    request_id = response.headers["x-request-id"]
    event = eventually(lambda: UsageEvent.objects.filter(request_id=request_id).first())
    assert event.completion_tokens == 5 and event.prompt_tokens > 0
    assert event.estimated
    log = RequestLog.objects.get(request_id=request_id)
    assert (log.error_code, log.streamed) == ("upstream_error", True)


def test_router_failing_mid_stream_ends_an_anthropic_stream_with_an_error_event(
    simulators, gateway
):
    (router,) = simulators(1, disconnect_after_tokens=3)
    server = gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()

    response = requests.post(
        f"{server.url}/v1/messages",
        json={"model": seeding.MODEL, "max_tokens": 64, "messages": MESSAGES, "stream": True},
        headers={"x-api-key": tenant.secret},
        stream=True,
        timeout=30,
    )
    events = sse_events(response.iter_lines(decode_unicode=True))

    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:] == ["content_block_delta"] * 3 + ["error"]
    error = json.loads(events[-1][1])
    assert (
        error["type"] == "error"
        and error["error"]["type"] == "api_error"
        and error["error"]["message"]
    )
    request_id = response.headers["x-request-id"]
    event = eventually(lambda: UsageEvent.objects.filter(request_id=request_id).first())
    assert (event.completion_tokens, event.estimated) == (3, True)
