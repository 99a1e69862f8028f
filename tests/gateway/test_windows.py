"""The sliding windows in the admission script, driven with a hand-made auth context and clock."""

from __future__ import annotations

import uuid

import pytest

from gateway import limits
from metering.quotas import quota_key
from tests.support.authcontexts import HASH, T0, cache_context


@pytest.fixture
def context(fast_state):
    return lambda **plan: cache_context(fast_state, **plan)


def admit(at_ms: int, est: int = 1, request_id: str | None = None) -> limits.Admission:
    return limits.admit(
        key_hash=HASH,
        now_ms=at_ms,
        request_id=request_id or f"req_{uuid.uuid4().hex[:24]}",
        model="m",
        est_tokens=est,
        cands=[1, 1, 0],
    )


def test_requests_per_minute_slide_with_the_clock(context):
    context(rpm=3)
    assert [admit(T0 + s * 1000).status for s in (0, 10, 20, 30)] == [
        "ok",
        "ok",
        "ok",
        "rate_requests",
    ]
    # The first request leaves the window 60 s after its second began.
    assert admit(T0 + 59_999).status == "rate_requests"
    assert admit(T0 + 60_000).status == "ok"
    assert admit(T0 + 60_500).status == "rate_requests"


def test_a_quiet_minute_empties_the_window(context):
    context(rpm=2)
    assert [admit(T0).status, admit(T0 + 1).status, admit(T0 + 2).status] == [
        "ok",
        "ok",
        "rate_requests",
    ]
    later = T0 + 3_600_000
    assert [admit(later).status, admit(later + 1).status, admit(later + 2).status] == [
        "ok",
        "ok",
        "rate_requests",
    ]


def test_remaining_and_reset_headers_follow_the_window(context):
    context(rpm=5)
    first = admit(T0 + 250)
    assert (first.rpm_limit, first.rpm_remaining) == (5, 4)
    second = admit(T0 + 30_000)
    assert second.rpm_remaining == 3
    assert 29_000 <= second.rpm_reset_ms <= 30_000  # until the first request's second leaves


def test_settling_returns_unused_reserved_tokens(context):
    ctx = context(tpm=100)
    first = admit(T0, est=60, request_id="req_x")
    assert first.status == "ok"
    assert admit(T0 + 100, est=60).status == "rate_tokens"
    limits.settle(
        request_id="req_x",
        ctx=ctx,
        router_id=first.router_id,
        router_outcome="ok",
        admitted_s=T0 // 1000,
        est_tokens=60,
        actual_tokens=10,
        served=True,
        now_ms=T0 + 200,
    )
    assert admit(T0 + 300, est=60).status == "ok"
    assert admit(T0 + 400, est=60).status == "rate_tokens"


def test_settling_a_bucket_that_already_left_changes_nothing(context):
    ctx = context(tpm=100)
    assert admit(T0, est=50, request_id="req_x").status == "ok"
    assert admit(T0 + 61_000, est=90).status == "ok"  # the first bucket has left the window
    limits.settle(
        request_id="req_x",
        ctx=ctx,
        router_id=1,
        router_outcome="ok",
        admitted_s=T0 // 1000,
        est_tokens=50,
        actual_tokens=0,
        served=True,
        now_ms=T0 + 61_500,
    )
    assert admit(T0 + 62_000, est=11).status == "rate_tokens"  # still 90 of 100 in the window
    assert admit(T0 + 62_000, est=10).status == "ok"


def test_large_counters_stay_exact_integers(context, fast_state):
    """Counters are written back by the script: past 10**14 Lua's default number format
    would switch to exponent notation and corrupt them."""
    ctx = context(tpm=10**15, qt=10**16)  # Lua numbers are doubles: exact below 2**53
    qkey = quota_key(org_id="org1", period_start_ms=ctx.period_start_ms)
    fast_state.hset(qkey, mapping={"r": 5, "t": 10**15 + 3})
    assert admit(T0, est=2 * 10**14 + 7).status == "ok"
    assert fast_state.hget(qkey, "t") == str(10**15 + 2 * 10**14 + 10).encode()
    assert fast_state.hget(qkey, "r") == b"6"
    assert admit(T0 + 1, est=1).tpm_remaining == 10**15 - (2 * 10**14 + 7) - 1


def test_expired_in_flight_leases_do_not_count(context, fast_state):
    """A request whose process died never settles: its lease runs out and stops counting."""
    from django.conf import settings

    context(cc=1)
    first = admit(T0)
    assert first.status == "ok"
    assert admit(T0 + 1).status == "concurrency"
    after_lease = T0 + settings.GATEWAY_LEASE_SECONDS * 1000 + 1
    assert admit(after_lease).status == "ok"
