"""Latency-aware router health: the probe times a one-token completion, marks a router
that answers `/status` at once but completes slowly as slow (RouterHealth, fast state,
check_routers), clears the mark when it is fast again, counts a failing completion as a
failure, and the recovery probe closes an open breaker as soon as the router is back."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from infra import fastkeys
from pools import services as pool_services
from pools.client import PROBE_REFERENCE
from pools.health import (
    breaker_key,
    routers_live,
    routers_probe,
    routers_probe_recovering,
    slow_key,
)
from pools.models import Router, RouterHealth
from pools.tasks import probe_recovering_routers
from tests.factories import seeding

pytestmark = pytest.mark.django_db


def configure(url: str, **knobs) -> None:
    requests.post(url + "/_sim/config", json=knobs, timeout=5).raise_for_status()


def completions(url: str) -> list[str]:
    return requests.get(url + "/_sim/stats", timeout=5).json()["client_references"]


@pytest.fixture
def routers(simulator, fast_state, settings):
    """(fast, slow): two routers of one pool with a route, the second one slow to complete."""
    settings.ROUTER_SLOW_SECONDS = 0.3
    fast_url, slow_url = simulator(), simulator()
    configure(slow_url, latency_ms=3000)  # /api/v1/status stays fast
    catalog = seeding.catalog(router_urls=[fast_url, slow_url])
    fast, slow = (Router.objects.select_related("pool").get(pk=r.pk) for r in catalog.routers)
    return fast, slow


def probe(*routers: Router):
    return {r.name: r for r in routers_probe(now=timezone.now(), routers=list(routers))}


def test_a_router_fast_on_status_but_slow_to_complete_is_marked_slow(routers, fast_state):
    fast, slow = routers

    results = probe(fast, slow)

    assert results[slow.name].ok and results[slow.name].slow
    assert results[slow.name].completion_ms == 300  # no first byte within the limit
    assert results[fast.name].ok and not results[fast.name].slow
    assert 0 <= results[fast.name].completion_ms < 300
    health = RouterHealth.objects.get(router=slow)
    assert (health.ok, health.slow, health.completion_ms) == (True, True, 300)
    assert health.latency_ms < 300  # its status probe was fast
    assert not RouterHealth.objects.get(router=fast).slow
    # The mark the gateway reads, expiring on its own if probes stop.
    assert fast_state.get(slow_key(slow.pk)) == b"300"
    assert (
        0 < fast_state.pttl(slow_key(slow.pk)) <= 3 * settings.ROUTER_PROBE_INTERVAL_SECONDS * 1000
    )
    assert not fast_state.exists(slow_key(fast.pk))
    now_ms = int(timezone.now().timestamp() * 1000)
    live = routers_live([fast.pk, slow.pk], now_ms=now_ms)
    assert (live[slow.pk].slow_ms, live[fast.pk].slow_ms) == (300, None)
    # A slow router is up: its breaker is not fed a failure.
    assert not fast_state.exists(breaker_key(slow.pk))
    assert PROBE_REFERENCE in completions(slow.base_url)


def test_the_mark_clears_when_the_router_is_fast_again(routers, fast_state):
    _, slow = routers
    probe(slow)
    assert fast_state.exists(slow_key(slow.pk))

    configure(slow.base_url, latency_ms=0)
    (result,) = routers_probe(now=timezone.now(), routers=[slow])

    assert result.ok and not result.slow
    assert not fast_state.exists(slow_key(slow.pk))
    assert not RouterHealth.objects.get(router=slow).slow


def test_a_router_whose_completions_fail_is_down_though_its_status_answers(
    routers, fast_state, settings
):
    settings.BREAKER_FAILURE_THRESHOLD = 2
    fast, _ = routers
    configure(fast.base_url, failure_rate=1.0)

    probe(fast)
    results = probe(fast)

    assert not results[fast.name].ok and results[fast.name].breaker == "open"
    health = RouterHealth.objects.get(router=fast)
    assert (health.ok, health.consecutive_failures) == (False, 2)


def test_a_router_down_keeps_its_mark_until_a_completion_is_timed(routers, fast_state):
    _, slow = routers
    probe(slow)
    Router.objects.filter(pk=slow.pk).update(base_url="http://127.0.0.1:9")  # nothing listens
    slow.refresh_from_db()

    (result,) = routers_probe(now=timezone.now(), routers=[slow])

    assert not result.ok and result.slow
    assert fast_state.exists(slow_key(slow.pk))


def test_a_pool_without_a_route_gets_the_status_probe_only(simulator, fast_state):
    url = simulator()
    pool = pool_services.pool_create(name="no-routes")
    router = pool_services.router_create(pool=pool, name="lone", base_url=url, api_key="rk")

    (result,) = routers_probe(now=timezone.now(), routers=[router])

    assert result.ok and not result.slow and result.completion_ms is None
    assert completions(url) == []


def test_slowness_is_not_timed_when_turned_off(routers, fast_state, settings):
    _, slow = routers
    probe(slow)
    settings.ROUTER_SLOW_SECONDS = 0

    (result,) = routers_probe(now=timezone.now(), routers=[slow])

    assert result.ok and not result.slow and result.completion_ms is None
    assert not fast_state.exists(slow_key(slow.pk))  # turning it off frees the router


def test_check_routers_shows_a_slow_router(routers):
    out = StringIO()
    call_command("check_routers", stdout=out)
    rows = {line.split()[1]: line.split() for line in out.getvalue().splitlines()[1:3]}
    fast, slow = routers
    assert rows[slow.name][3] == "SLOW" and rows[fast.name][3] == "up"
    assert out.getvalue().splitlines()[-1] == "2 up, 0 down (1 slow)"


# --- recovery -------------------------------------------------------------------------------


def test_the_recovery_probe_takes_back_a_router_whose_breaker_is_open(routers, fast_state):
    fast, slow = routers
    configure(slow.base_url, latency_ms=0)
    fast_state.hset(
        breaker_key(fast.pk), mapping={"state": "open", "opened": 1, "fails": 9, "probe": 5}
    )

    results = routers_probe_recovering(now=timezone.now())

    assert [(r.router_id, r.ok, r.breaker) for r in results] == [(fast.pk, True, "closed")]
    assert not fast_state.exists(breaker_key(fast.pk))  # closed now, not after the cool-down


def test_the_recovery_probe_keeps_a_still_failing_router_out(routers, fast_state):
    fast, _ = routers
    configure(fast.base_url, failure_rate=1.0)  # its status answers; completions fail
    fast_state.hset(breaker_key(fast.pk), mapping={"state": "open", "opened": 1, "fails": 9})

    (result,) = routers_probe_recovering(now=timezone.now())

    assert (result.router_id, result.ok, result.breaker) == (fast.pk, False, "open")
    assert fast_state.hget(breaker_key(fast.pk), "state") == b"open"


def test_the_recovery_probe_rechecks_slow_routers_only(routers, fast_state):
    fast, slow = routers
    probe(fast, slow)
    configure(slow.base_url, latency_ms=0)

    assert probe_recovering_routers.apply().get() == 1
    assert RouterHealth.objects.get(router=slow).slow is False
    assert not fast_state.exists(slow_key(slow.pk))
    assert routers_probe_recovering(now=timezone.now()) == []  # none left to recheck


def test_recovery_rounds_do_not_overlap(routers, fast_state):
    fast, _ = routers
    fast_state.hset(breaker_key(fast.pk), mapping={"state": "open", "opened": 1, "fails": 9})
    fast_state.set(fastkeys.PROBE_ROUND(name="recovering"), "another", px=10_000)
    assert routers_probe_recovering(now=timezone.now()) == []
    assert fast_state.hget(breaker_key(fast.pk), "state") == b"open"


def test_the_recovery_probe_is_scheduled():
    entry = settings.CELERY_BEAT_SCHEDULE["pools.probe_recovering_routers"]
    assert entry["task"] == "pools.probe_recovering_routers"
    assert entry["schedule"] == settings.ROUTER_RECOVERY_PROBE_SECONDS
