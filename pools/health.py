"""Router health: probes, recorded durably, fed to the breaker and to the slow mark;
and the live state (breaker, in-flight, slow) that staff read in the admin and dashboard.

A probe is `GET /api/v1/status` and then, when the router is up and its pool has a route,
a one-token completion (`max_tokens` 1) on that route's session, timed to its first byte:
a router can answer `/status` at once and still take 35 s to complete. Latency comes from
this probe rather than from the gateway's own requests, so measuring costs the hot path
nothing, and a router that has been marked slow (and so gets little traffic) is still
measured, so it is taken back as soon as it is fast again.

- Slow: no first byte within ROUTER_SLOW_SECONDS (10 s; 0 turns the completion probe off).
  The mark lives in fast state (`rslow:<router id>`, the ms measured, expiring after three
  probe intervals so a stopped beat cannot leave a router demoted) and in RouterHealth
  (`slow`, `completion_ms`). The gateway's router choice (gateway/lua/routers.lua) reads it
  in the same script: a slow router ranks after every router that is not, and is used
  only when no other is eligible. Requests that still meet a slow router fail over at the
  first-byte deadline (pools/client.py).
- Down: the status probe fails, or the completion fails (cannot connect, 5xx, a status that
  says the router cannot serve the session). A failed probe counts as one router failure
  (as a failed request does): the breaker in fast state (`brk:<router id>`, fields
  state/opened/fails/probe) opens at BREAKER_FAILURE_THRESHOLD, and a failed probe of an
  open router keeps it open for another cooldown.
- Up (slow or not): the breaker closes, as after a successful request. Routers whose
  breaker is open, or that are marked slow, are probed every ROUTER_RECOVERY_PROBE_SECONDS
  (5 s; beat task `pools.probe_recovering_routers`), so a restarted router takes requests
  again within seconds rather than after BREAKER_COOLDOWN_MS; every enabled router is
  probed every ROUTER_PROBE_INTERVAL_SECONDS (30 s; `pools.probe_routers`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import transaction

from infra import fastkeys, faststate
from pools.catalog import RouteEntry, RouterEntry
from pools.client import RouterClient
from pools.models import Model, Route, Router, RouterHealth
from pools.sealing import unseal

logger = logging.getLogger(__name__)

MAX_PARALLEL_PROBES = 16

# KEYS: breaker, slow mark. ARGV: ok (1/0), now_ms, failure threshold, slow (ms to the
# completion's first byte when slow, 0 when not, -1 when not measured: left as it is),
# the slow mark's lifetime in ms. Returns the breaker state after the probe.
_FEED_BREAKER = """
local slow = tonumber(ARGV[4])
if slow > 0 then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
elseif slow == 0 then
  redis.call('DEL', KEYS[2])
end
local bk = KEYS[1]
if ARGV[1] == '1' then
  redis.call('DEL', bk)  -- closed, no failures counted (as a successful request leaves it)
  return 'closed'
end
local fails = redis.call('HINCRBY', bk, 'fails', 1)
if fails >= tonumber(ARGV[3]) or redis.call('HGET', bk, 'state') == 'open' then
  redis.call('HSET', bk, 'state', 'open', 'opened', ARGV[2])
  redis.call('HDEL', bk, 'probe')
  return 'open'
end
return 'closed'
"""


@dataclass(frozen=True)
class ProbeResult:
    router_id: int
    pool: str
    name: str
    base_url: str
    ok: bool
    latency_ms: int
    consecutive_failures: int
    breaker: str  # after this probe: "open", "closed", or "unknown" (fast state unavailable)
    slow: bool = False
    completion_ms: int | None = None  # the one-token completion's first byte; None: not timed


@dataclass(frozen=True)
class Probe:
    """One router's probe: up or not, and what the completion showed (None: not timed)."""

    ok: bool
    latency_ms: int
    completion_ms: int | None = None
    slow: bool | None = None


@dataclass(frozen=True)
class RouterLive:
    """A router's fast state now: breaker ("closed", "open", "half-open"), in-flight
    requests, and the ms its last probe measured when that marked it slow."""

    breaker: str
    fails: int
    opened_ms: int | None
    inflight: int
    slow_ms: int | None = None


def breaker_key(router_id: int) -> str:
    return fastkeys.BREAKER(router_id=router_id)


def inflight_key(router_id: int) -> str:
    return fastkeys.ROUTER_INFLIGHT(router_id=router_id)


def slow_key(router_id: int) -> str:
    return fastkeys.ROUTER_SLOW(router_id=router_id)


def _entry(router: Router) -> RouterEntry | None:
    try:
        api_key = unseal(router.api_key_sealed)
    except ValueError:
        return None
    return RouterEntry(
        id=router.pk,
        name=router.name,
        base_url=router.base_url.rstrip("/"),
        api_key=api_key,
        weight=router.weight,
    )


def _probe_routes(routers: list[Router]) -> dict[int, RouteEntry]:
    """A route for each router's pool, for the completion probe: an enabled model's first."""
    found = Route.objects.filter(pool_id__in={r.pool_id for r in routers}).select_related(
        "pool", "model"
    )
    routes: dict[int, RouteEntry] = {}
    for route in sorted(
        found, key=lambda r: (r.model.status != Model.Status.ENABLED, r.priority, r.pk)
    ):
        routes.setdefault(
            route.pool_id,
            RouteEntry(
                id=route.pk,
                pool_id=route.pool_id,
                pool_name=route.pool.name,
                pool_status=route.pool.status,
                session_id=route.session_id,
                session_in_path=route.session_in_path,
                template=route.prompt_template,
                api_style=route.api_style,
                priority=route.priority,
                routers=(),
            ),
        )
    return routes


def _probe(client: RouterClient, router: Router, route: RouteEntry | None) -> Probe:
    entry = _entry(router)
    if entry is None:
        logger.error("router %s: API key cannot be unsealed; counted as down", router.pk)
        return Probe(ok=False, latency_ms=0)
    ok, latency = client.probe(entry)
    limit = settings.ROUTER_SLOW_SECONDS
    if not ok:
        return Probe(ok=False, latency_ms=round(latency))
    if route is None or limit <= 0:
        return Probe(ok=True, latency_ms=round(latency), slow=False)
    outcome, completion_ms = client.probe_completion(entry, route, limit=limit)
    if outcome == "fail":
        return Probe(ok=False, latency_ms=round(latency))
    return Probe(
        ok=True,
        latency_ms=round(latency),
        completion_ms=round(completion_ms),
        slow=outcome == "slow" or completion_ms >= limit * 1000,
    )


def routers_probe(
    *, now: datetime, routers: Iterable[Router] | None = None, client: RouterClient | None = None
) -> list[ProbeResult]:
    """Probe every enabled router (or `routers`) once, in parallel; record and feed the breaker."""
    if routers is None:
        routers = (
            Router.objects.filter(enabled=True)
            .select_related("pool")
            .order_by("pool__name", "name")
        )
    routers = list(routers)
    if not routers:
        return []
    client = client or RouterClient()
    routes = _probe_routes(routers)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PROBES, len(routers))) as pool:
        outcomes = list(
            pool.map(lambda router: _probe(client, router, routes.get(router.pool_id)), routers)
        )
    now_ms = int(now.timestamp() * 1000)
    results = []
    for router, probe in zip(routers, outcomes, strict=True):
        failures, slow = router_health_record(
            router=router,
            ok=probe.ok,
            latency_ms=probe.latency_ms,
            now=now,
            slow=probe.slow,
            completion_ms=probe.completion_ms,
        )
        breaker = _feed_breaker(router.pk, probe=probe, now_ms=now_ms)
        results.append(
            ProbeResult(
                router_id=router.pk,
                pool=router.pool.name,
                name=router.name,
                base_url=router.base_url,
                ok=probe.ok,
                latency_ms=probe.latency_ms,
                consecutive_failures=failures,
                breaker=breaker,
                slow=slow,
                completion_ms=probe.completion_ms,
            )
        )
    return results


def routers_probe_recovering(
    *, now: datetime, client: RouterClient | None = None
) -> list[ProbeResult]:
    """Probe the enabled routers whose breaker is open or that are marked slow, so one that
    is back is taken back at once. Rounds do not overlap (a slow router's probe may take
    ROUTER_SLOW_SECONDS): a round that finds another under way probes nothing."""
    routers = list(Router.objects.filter(enabled=True).select_related("pool").order_by("pk"))
    live = routers_live([r.pk for r in routers], now_ms=int(now.timestamp() * 1000))
    routers = [
        r
        for r in routers
        if r.pk in live and (live[r.pk].breaker != "closed" or live[r.pk].slow_ms is not None)
    ]
    if not routers:
        return []
    fast = faststate.get_client()
    lock, token = fastkeys.PROBE_ROUND(name="recovering"), uuid.uuid4().hex
    longest = settings.ROUTER_PROBE_TIMEOUT + max(settings.ROUTER_SLOW_SECONDS, 0) + 5
    try:
        if not fast.set(lock, token, nx=True, px=int(longest * 1000)):
            return []
    except redis.RedisError:
        return []
    try:
        return routers_probe(now=now, routers=routers, client=client)
    finally:
        with contextlib.suppress(redis.RedisError):  # else it expires
            fast.eval(_RELEASE, 1, lock, token)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@transaction.atomic
def router_health_record(
    *,
    router: Router,
    ok: bool,
    latency_ms: int,
    now: datetime,
    slow: bool | None = None,
    completion_ms: int | None = None,
) -> tuple[int, bool]:
    """Store one probe's outcome; returns the consecutive failures after it and whether
    the router is marked slow (`slow` None: the probe could not tell, the mark stays)."""
    health = RouterHealth.objects.select_for_update().filter(router=router).first()
    failures = 0 if ok else (health.consecutive_failures + 1 if health else 1)
    last_ok_at = now if ok else (health.last_ok_at if health else None)
    if slow is None:
        slow = health.slow if health else False
    RouterHealth.objects.update_or_create(
        router=router,
        defaults={
            "ok": ok,
            "latency_ms": max(latency_ms, 0),
            "consecutive_failures": failures,
            "checked_at": now,
            "last_ok_at": last_ok_at,
            "completion_ms": completion_ms,
            "slow": slow,
        },
    )
    return failures, slow


def _slow_mark_ms() -> int:
    """How long a slow mark outlives its probe: three probe intervals, at least a minute."""
    return max(3 * settings.ROUTER_PROBE_INTERVAL_SECONDS, 60) * 1000


def _feed_breaker(router_id: int, *, probe: Probe, now_ms: int) -> str:
    slow = -1  # not measured: the mark stays as it is
    if probe.slow is not None:
        slow = max(probe.completion_ms or 0, 1) if probe.slow else 0
    try:
        state = faststate.get_client().eval(
            _FEED_BREAKER,
            2,
            breaker_key(router_id),
            slow_key(router_id),
            1 if probe.ok else 0,
            now_ms,
            settings.BREAKER_FAILURE_THRESHOLD,
            slow,
            _slow_mark_ms(),
        )
    except redis.RedisError:
        logger.warning("fast state unavailable: router %s probe not fed to its breaker", router_id)
        return "unknown"
    return state.decode() if isinstance(state, bytes) else str(state)


def routers_live(router_ids: Iterable[int], *, now_ms: int) -> dict[int, RouterLive]:
    """Breaker state and in-flight count of each router, in one fast-state round trip.

    Routers are missing from the answer when fast state cannot be read.
    """
    ids = list(router_ids)
    if not ids:
        return {}
    pipe = faststate.get_client().pipeline(transaction=False)
    for router_id in ids:
        pipe.hmget(breaker_key(router_id), "state", "fails", "opened")
        pipe.zcount(inflight_key(router_id), now_ms, "+inf")
        pipe.get(slow_key(router_id))
    try:
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("fast state unavailable: router live state unknown")
        return {}
    live = {}
    for index, router_id in enumerate(ids):
        (state, fails, opened), inflight, slow = replies[3 * index : 3 * index + 3]
        opened_ms = int(opened) if opened else None
        breaker = "open" if state == b"open" else "closed"
        if (
            breaker == "open"
            and opened_ms is not None
            and now_ms >= opened_ms + settings.BREAKER_COOLDOWN_MS
        ):
            breaker = "half-open"  # the next request (or probe) may try it
        live[router_id] = RouterLive(
            breaker=breaker,
            fails=int(fails or 0),
            opened_ms=opened_ms,
            inflight=int(inflight),
            slow_ms=int(slow) if slow is not None else None,
        )
    return live


@transaction.atomic
def router_breaker_reset(*, router: Router) -> None:
    """Close a router's breaker now (staff know the router is back)."""
    transaction.on_commit(lambda: faststate.get_client().delete(breaker_key(router.pk)))
