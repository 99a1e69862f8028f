"""Router health: the probe task and `manage.py check_routers` record each router's health
and latency, and feed its circuit breaker (in fast state, where the gateway reads it)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from pools import services as pool_services
from pools.health import breaker_key, routers_live, routers_probe
from pools.models import Router, RouterHealth
from pools.tasks import probe_routers
from tests.support.processes import dead_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_routers(simulators):
    (sim,) = simulators(1)
    pool = pool_services.pool_create(name="health-pool")
    up = pool_services.router_create(pool=pool, name="up", base_url=sim.url, api_key="rk-health")
    down = pool_services.router_create(
        pool=pool, name="down", base_url=dead_url(), api_key="rk-health"
    )
    return up, down


def breaker(fast_state, router: Router) -> dict:
    return {k.decode(): v.decode() for k, v in fast_state.hgetall(breaker_key(router.pk)).items()}


def test_probes_record_health_and_open_the_breaker_of_a_dead_router(
    two_routers, fast_state, settings
):
    settings.BREAKER_FAILURE_THRESHOLD = 2
    up, down = two_routers
    first = timezone.now()
    results = {r.name: r for r in routers_probe(now=first)}
    assert results["up"].ok and not results["down"].ok
    assert breaker(fast_state, down) == {"fails": "1"}  # one failure: still closed

    second = timezone.now()
    results = {r.name: r for r in routers_probe(now=second)}
    assert results["down"].breaker == "open" and results["down"].consecutive_failures == 2
    assert breaker(fast_state, down) == {
        "fails": "2",
        "state": "open",
        "opened": str(int(second.timestamp() * 1000)),
    }
    assert breaker(fast_state, up) == {}  # closed, no failures counted: the breaker holds nothing

    healthy, dead = RouterHealth.objects.get(router=up), RouterHealth.objects.get(router=down)
    assert healthy.ok and healthy.consecutive_failures == 0 and healthy.last_ok_at == second
    assert healthy.checked_at == second and 0 <= healthy.latency_ms < 2000
    assert not dead.ok and dead.consecutive_failures == 2 and dead.last_ok_at is None

    live = routers_live([down.pk], now_ms=int(second.timestamp() * 1000))[down.pk]
    assert (live.breaker, live.fails, live.inflight) == ("open", 2, 0)


def test_a_successful_probe_closes_an_open_breaker(two_routers, fast_state):
    up, _ = two_routers
    fast_state.hset(
        breaker_key(up.pk), mapping={"state": "open", "opened": 1, "fails": 7, "probe": 5}
    )
    (result,) = routers_probe(
        now=timezone.now(), routers=[Router.objects.select_related("pool").get(pk=up.pk)]
    )
    assert result.ok and result.breaker == "closed"
    assert breaker(fast_state, up) == {}  # closed: the open state and its failure count are gone


def test_disabled_routers_are_not_probed(two_routers):
    _, down = two_routers
    Router.objects.filter(pk=down.pk).update(enabled=False)
    assert [r.name for r in routers_probe(now=timezone.now())] == ["up"]


def test_the_beat_task_probes_and_is_scheduled(two_routers):
    assert probe_routers.apply().get() == 1  # one of two routers is up
    assert RouterHealth.objects.count() == 2
    entry = settings.CELERY_BEAT_SCHEDULE["pools.probe_routers"]
    assert (
        entry["task"] == "pools.probe_routers"
        and entry["schedule"] == settings.ROUTER_PROBE_INTERVAL_SECONDS
    )
    assert settings.CELERY_BEAT_SCHEDULE["ops.sync_access_pause"]["task"] == "ops.sync_access_pause"


def test_check_routers_prints_a_table(two_routers):
    up, down = two_routers
    out = StringIO()
    call_command("check_routers", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "POOL",
        "ROUTER",
        "URL",
        "STATUS",
        "LATENCY",
        "FAILS",
        "BREAKER",
        "IN-FLIGHT",
    ]
    rows = {line.split()[1]: line.split() for line in lines[1:3]}
    assert rows["up"][2] == up.base_url and rows["up"][3] == "up"
    assert rows["down"][3] == "DOWN" and rows["down"][6] == "1"  # one failure so far
    assert lines[-1] == "1 up, 1 down"
    assert "rk-health" not in out.getvalue()
    with pytest.raises(CommandError, match="1 router"):
        call_command("check_routers", "--strict", stdout=StringIO())
    assert RouterHealth.objects.get(router=down).consecutive_failures == 2
