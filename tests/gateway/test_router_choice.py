"""The admission script's router pick (gateway/lua/routers.lua), driven with a hand-made
auth context, clock and draws: two weighted draws, the one with fewer live in-flight
requests wins; a router marked slow ranks after every other; one candidate is taken as is."""

from __future__ import annotations

import uuid

import pytest

from gateway import limits
from infra import fastkeys
from tests.support.authcontexts import HASH, T0, cache_context

TWO = [1, 1, 0, 2, 1, 0]  # routers 1 and 2, weight 1 each, one tier


@pytest.fixture
def fast(fast_state):
    cache_context(fast_state)
    return fast_state


def pick(monkeypatch, cands: list, draws: tuple[float, float]) -> int:
    """The router admission picks with these two draws (the third: no sweep)."""
    values = iter([*draws, 0.5])
    monkeypatch.setattr(limits.random, "random", lambda: next(values))
    adm = limits.admit(
        key_hash=HASH,
        now_ms=T0,
        request_id=f"req_{uuid.uuid4().hex[:24]}",
        model="m",
        est_tokens=1,
        cands=cands,
    )
    assert adm.status == "ok"
    return adm.router_id


def leases(fast_state, router_id: int, *, live: int = 0, expired: int = 0) -> None:
    key = fastkeys.ROUTER_INFLIGHT(router_id=router_id)
    for i in range(live):
        fast_state.zadd(key, {f"live{i}": T0 + 30_000})
    for i in range(expired):
        fast_state.zadd(key, {f"gone{i}": T0 - 1})


@pytest.mark.parametrize("draws", [(0.1, 0.9), (0.9, 0.1)])
def test_of_two_routers_drawn_the_one_with_fewer_live_requests_wins(fast, monkeypatch, draws):
    leases(fast, 1, live=2)
    leases(fast, 2, live=1, expired=5)  # run-out leases count for nothing
    assert pick(monkeypatch, TWO, draws) == 2


def test_a_router_drawn_twice_is_taken_however_busy(fast, monkeypatch):
    leases(fast, 1, live=3)
    assert pick(monkeypatch, TWO, (0.1, 0.2)) == 1


def test_a_slow_router_ranks_after_the_others_but_is_used_alone(fast, monkeypatch):
    fast.set(fastkeys.ROUTER_SLOW(router_id=1), "5000")
    leases(fast, 2, live=3)
    assert pick(monkeypatch, TWO, (0.1, 0.2)) == 2
    assert pick(monkeypatch, [1, 1, 0], (0.1, 0.2)) == 1
