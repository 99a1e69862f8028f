"""A key's own limits in admit.lua, driven with its own clock: the key is counted against
its limits and the organization against its own; the binding one (less left) is what the
x-ratelimit values show, and a refusal names whose limit it was."""

from __future__ import annotations

import pytest

from gateway import limits
from tests.support.authcontexts import HASH, T0, cache_context

OTHER = "o" * 64  # a second key of the same organization


def admit(at_ms: int, request_id: str, *, key_hash: str = HASH, est: int = 10):
    return limits.admit(
        key_hash=key_hash,
        now_ms=at_ms,
        request_id=request_id,
        model="m",
        est_tokens=est,
        cands=[1, 1, 0],
    )


@pytest.fixture
def two_keys(fast_state):
    """key1 limited to 2 requests/min, 100 tokens/min and 1 in flight; key2 with the
    organization's limits (3 requests/min)."""
    cache_context(fast_state, rpm=3, key={"kl": [2, 100, 1]})
    cache_context(fast_state, rpm=3, key_id="key2", key_hash=OTHER)


def test_the_key_is_refused_at_its_own_limit_and_the_other_key_is_not(two_keys):
    first = admit(T0, "r1")
    assert (first.status, first.rpm_limit, first.rpm_remaining) == ("ok", 2, 1)
    limits.settle(
        request_id="r1", ctx=first.ctx, router_id=1, router_outcome="ok", admitted_s=T0 // 1000,
        est_tokens=10, actual_tokens=10, served=True, now_ms=T0 + 5,
    )  # fmt: skip
    assert admit(T0 + 10, "r2").status == "ok"
    third = admit(T0 + 20, "r3")
    assert (third.status, third.scope, third.rpm_limit, third.rpm_remaining) == (
        "rate_requests",
        "key",
        2,
        0,
    )
    # The org has used 2 of its 3: the other key is served, the org's limit binding.
    other = admit(T0 + 30, "r4", key_hash=OTHER)
    assert (other.status, other.rpm_limit, other.rpm_remaining) == ("ok", 3, 0)
    # Now the org's limit refuses both, and says so.
    assert (admit(T0 + 40, "r5", key_hash=OTHER).scope, admit(T0 + 50, "r6").scope) == (
        "org",
        "org",
    )


def test_the_keys_concurrency_and_token_limits(two_keys):
    assert admit(T0, "r1").status == "ok"  # in flight
    busy = admit(T0 + 10, "r2")
    assert (busy.status, busy.scope) == ("concurrency", "key")
    assert admit(T0 + 20, "r3", key_hash=OTHER).status == "ok"  # the org has room

    larger = admit(T0 + 30, "r4", est=150)  # more than the key's whole 100 tokens/min
    assert (larger.status, larger.scope, larger.tpm_limit, larger.retry_after_ms) == (
        "rate_tokens",
        "key",
        100,
        0,
    )
