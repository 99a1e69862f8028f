"""The router choice (gateway/lua/routers.lua) reads the health probe's slow marks in the
same script: a slow router is used only when no other router is eligible."""

from __future__ import annotations

import uuid

import pytest

from gateway import limits
from pools.health import breaker_key, slow_key

NOW = 1_900_000_000_000
FAILED = 999  # failover's "failed router": not a candidate, so the picks are the test's


@pytest.fixture
def pick(fast_state):
    def pick(cands: list, times: int = 40) -> list[int]:
        return [
            limits.failover(
                now_ms=NOW,
                request_id=f"req_{uuid.uuid4().hex[:12]}",
                failed_router_id=FAILED,
                cands=cands,
            )
            for _ in range(times)
        ]

    return pick


def mark_slow(fast_state, *router_ids: int) -> None:
    for router_id in router_ids:
        fast_state.set(slow_key(router_id), 35_000, px=60_000)


def test_a_slow_router_is_not_picked_while_another_is_eligible(pick, fast_state):
    mark_slow(fast_state, 1)
    assert set(pick([1, 9, 0, 2, 1, 0])) == {2}  # weight 9 does not bring it back


def test_a_slow_router_ranks_after_routers_of_later_tiers(pick, fast_state):
    mark_slow(fast_state, 1)
    assert set(pick([1, 1, 0, 2, 1, 1])) == {2}


def test_a_slow_router_is_still_used_when_it_is_the_only_one(pick, fast_state):
    mark_slow(fast_state, 1)
    assert set(pick([1, 1, 0], times=5)) == {1}


def test_slow_routers_keep_their_order_among_themselves(pick, fast_state):
    mark_slow(fast_state, 1, 2)
    assert set(pick([1, 1, 0, 2, 1, 1])) == {1}


def test_a_slow_router_is_used_when_the_others_breakers_are_open(pick, fast_state):
    mark_slow(fast_state, 1)
    fast_state.hset(breaker_key(2), mapping={"state": "open", "opened": NOW, "fails": 5})
    assert set(pick([1, 1, 0, 2, 1, 0], times=5)) == {1}


def test_without_marks_both_routers_share_the_traffic(pick, fast_state):
    assert set(pick([1, 1, 0, 2, 1, 0])) == {1, 2}
