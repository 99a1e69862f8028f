"""Leases that heal (gateway/leases.py): a dead process's slots come back within a lease,
its streams are billed once for what they sent, and a live owner that finishes after its
request was reaped changes nothing. The live crash (kill -9 under load) is in
tests/e2e/test_worker_crash.py."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from apikeys.authcontext import AuthContext
from apikeys.services import api_key_update
from gateway import leases, limits, upkeep
from infra import fastkeys, faststate
from metering.models import RequestLog, UsageEvent
from metering.quotas import quota_key
from pools.simulator import start_in_thread
from tests.factories import seeding
from tests.support.authcontexts import HASH, T0, cache_context

MESSAGES = [{"role": "user", "content": "Stream me something long."}]


@pytest.fixture
def context(fast_state):
    """A hand-made auth context: one concurrent request allowed."""
    return cache_context(fast_state, cc=1)


def admit(at_ms: int, request_id: str, est: int = 50) -> limits.Admission:
    return limits.admit(
        key_hash=HASH,
        now_ms=at_ms,
        request_id=request_id,
        model="m",
        est_tokens=est,
        cands=[1, 1, 0],
    )


def quota(fast_state, ctx: AuthContext) -> tuple[int, int]:
    values = fast_state.hmget(
        quota_key(org_id=ctx.org_id, period_start_ms=ctx.period_start_ms), "r", "t"
    )
    return int(values[0]), int(values[1])


def lease_ms() -> int:
    return limits.lease_ms()


def test_a_dead_processs_request_frees_its_slots_and_allowance_within_a_lease(context, fast_state):
    assert admit(T0, "req_dead").status == "ok"
    assert admit(T0 + 10, "req_waiting").status == "concurrency"
    assert quota(fast_state, context) == (1, 50)

    # Its process died: nothing renews it. Until the lease runs out the slot stays held.
    assert limits.reap(now_ms=T0 + lease_ms() - 1, limit=10, reclaim_ms=60_000) == []
    assert admit(T0 + lease_ms() - 1, "req_waiting").status == "concurrency"

    # The reaper settles it: it had sent nothing, so it gives everything back and has no bill.
    assert limits.reap(now_ms=T0 + lease_ms() + 1, limit=10, reclaim_ms=60_000) == []
    assert quota(fast_state, context) == (0, 0)
    assert fast_state.zcard(fastkeys.ROUTER_INFLIGHT(router_id=1)) == 0
    assert not fast_state.exists(fastkeys.LIVE(request_id="req_dead"))
    assert admit(T0 + lease_ms() + 2, "req_next").status == "ok"


def test_renewed_leases_are_not_reaped(context, fast_state):
    assert admit(T0, "req_live").status == "ok"
    lease = ("req_live", context.key_id, context.org_id, 1, -1)
    assert limits.renew(now_ms=T0 + lease_ms() - 100, leases=[lease]) == 1
    assert limits.reap(now_ms=T0 + lease_ms() + 1, limit=10, reclaim_ms=60_000) == []
    assert admit(T0 + lease_ms() + 2, "req_other").status == "concurrency"
    assert quota(fast_state, context) == (1, 50)


def test_a_reaped_request_is_settled_once(context, fast_state):
    assert admit(T0, "req_slow").status == "ok"
    limits.serving(request_id="req_slow", bill="{}", prompt_tokens=20)
    limits.renew(now_ms=T0 + 100, leases=[("req_slow", "key1", "org1", 1, 7)])
    claimed = limits.reap(now_ms=T0 + 100 + lease_ms() + 1, limit=10, reclaim_ms=60_000)
    assert [(rid, fields["tokens"]) for rid, fields in claimed] == [("req_slow", "27")]
    assert quota(fast_state, context) == (1, 27)  # served: prompt + the tokens it had sent

    # Its owner was only stalled, and settles later: nothing is counted twice.
    settled = limits.settle_begin(
        request_id="req_slow",
        ctx=context,
        router_id=1,
        router_outcome="ok",
        admitted_s=T0 // 1000,
        est_tokens=50,
        actual_tokens=40,
        served=True,
        now_ms=T0 + lease_ms() + 500,
    ).wait()
    assert settled == 0
    assert quota(fast_state, context) == (1, 27)


# --- through the flow: a stream whose process stops renewing it ---------------------------


@pytest.fixture
def slow_stream():
    url, stop = start_in_thread(quiet=True, completion_tokens=400, tokens_per_second=400)
    yield url
    stop()


def open_stream(secret: str):
    response = Client().post(
        "/v1/chat/completions",
        data=json.dumps({"model": seeding.MODEL, "messages": MESSAGES, "stream": True}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200
    content = iter(response.streaming_content)
    received = b""
    while b'"content"' not in received or received.count(b"data:") < 6:
        received += next(content)
    return response, content


def future_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


@pytest.mark.django_db(transaction=True)
def test_a_stream_left_by_a_dead_process_is_billed_once_for_what_it_sent(slow_stream):
    seeding.catalog(router_urls=[slow_stream])
    tenant = seeding.tenant()
    response, content = open_stream(tenant.secret)
    (call,) = leases.live_calls()
    assert call.serving and call.sent_chars > 0
    leases.renew(now_ms=future_ms(0))  # the last renewal before the process "dies"
    sent_tokens = -(-call.sent_chars // 4)
    leases._live.clear()  # dead: no more renewals

    assert leases.reap(now_ms=future_ms(limits.lease_ms() / 1000 + 1)) == 1
    log = RequestLog.objects.get(request_id=call.request_id)
    assert (log.status_code, log.error_code, log.streamed) == (200, leases.LOST, True)
    event = UsageEvent.objects.get(request_id=call.request_id)
    assert event.completion_tokens == sent_tokens
    assert event.prompt_tokens == call.prompt_tokens > 0
    assert event.estimated
    assert leases.reap(now_ms=future_ms(limits.lease_ms() / 1000 + 2)) == 0

    # The "dead" process wakes up and ends its stream: the reaper's record stands.
    for _ in content:
        pass
    response.close()
    assert UsageEvent.objects.filter(request_id=call.request_id).count() == 1
    assert UsageEvent.objects.get(request_id=call.request_id).completion_tokens == sent_tokens


@pytest.mark.django_db(transaction=True)
def test_a_claim_whose_reaper_died_is_handed_out_again_and_recorded_once(slow_stream):
    seeding.catalog(router_urls=[slow_stream])
    tenant = seeding.tenant()
    response, _ = open_stream(tenant.secret)
    (call,) = leases.live_calls()
    leases._live.clear()
    at = future_ms(limits.lease_ms() / 1000 + 1)
    # A reaper claims it and dies before writing the record.
    assert [rid for rid, _ in limits.reap(now_ms=at, limit=10, reclaim_ms=60_000)] == [
        call.request_id
    ]
    assert leases.reap(now_ms=at + 1000) == 0  # claimed lately: not handed out yet
    assert leases.reap(now_ms=at + leases.RECLAIM_MS + 1) == 1
    assert leases.reap(now_ms=at + 2 * leases.RECLAIM_MS + 2) == 0
    assert UsageEvent.objects.filter(request_id=call.request_id).count() == 1
    response.close()


@pytest.mark.django_db(transaction=True)
def test_a_stopping_process_records_the_streams_it_still_runs(slow_stream):
    seeding.catalog(router_urls=[slow_stream])
    tenant = seeding.tenant()
    response, _ = open_stream(tenant.secret)
    (call,) = leases.live_calls()
    sent_tokens = -(-call.sent_chars // 4)

    assert upkeep.abandon_all() == 1
    log = RequestLog.objects.get(request_id=call.request_id)
    assert log.error_code == upkeep.STOPPED
    event = UsageEvent.objects.get(request_id=call.request_id)
    assert (event.prompt_tokens, event.completion_tokens) == (call.prompt_tokens, sent_tokens)
    assert leases.live_calls() == []
    response.close()
    assert UsageEvent.objects.filter(request_id=call.request_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_reaped_streams_budget_counter_is_settled_to_what_it_billed(slow_stream):
    seeding.catalog(router_urls=[slow_stream])
    tenant = seeding.tenant()
    api_key_update(
        key=tenant.key,
        actor=None,
        now=tenant.key.created_at,
        controls={"budget": {"amount": 10**9, "period": "day"}},
    )
    response, content = open_stream(tenant.secret)
    (call,) = leases.live_calls()
    (counter,) = faststate.get_client().keys("*budget*")
    assert int(faststate.get_client().get(counter)) == call.est_cost > 0  # reserved
    leases.renew(now_ms=future_ms(0))
    leases._live.clear()

    assert leases.reap(now_ms=future_ms(limits.lease_ms() / 1000 + 1)) == 1
    event = UsageEvent.objects.get(request_id=call.request_id)
    assert 0 < event.cost < call.est_cost
    assert int(faststate.get_client().get(counter)) == event.cost  # the reservation settled
    for _ in content:
        pass
    response.close()
    assert int(faststate.get_client().get(counter)) == event.cost  # the late owner: no change
