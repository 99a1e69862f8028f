"""Router health: probes of `GET /api/v1/status`, recorded durably, fed to the breaker;
and the live state (breaker, in-flight) that staff read in the admin and dashboard.

A failed probe counts as one router failure (as a failed request does): the breaker in
fast state (`brk:<router id>`, fields state/opened/fails/probe) opens at
BREAKER_FAILURE_THRESHOLD, and a failed probe of an open router keeps it open for
another cooldown. A successful probe closes the breaker, as a successful request does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import transaction

from infra import fastkeys, faststate
from pools.catalog import RouterEntry
from pools.client import RouterClient
from pools.models import Router, RouterHealth
from pools.sealing import unseal

logger = logging.getLogger(__name__)

MAX_PARALLEL_PROBES = 16

# ARGV: ok (1/0), now_ms, failure threshold. Returns the breaker state after the probe.
_FEED_BREAKER = """
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


@dataclass(frozen=True)
class RouterLive:
    """A router's fast state now: breaker ("closed", "open", "half-open") and in-flight requests."""

    breaker: str
    fails: int
    opened_ms: int | None
    inflight: int


def breaker_key(router_id: int) -> str:
    return fastkeys.BREAKER(router_id=router_id)


def inflight_key(router_id: int) -> str:
    return fastkeys.ROUTER_INFLIGHT(router_id=router_id)


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


def _probe(client: RouterClient, router: Router) -> tuple[bool, int]:
    entry = _entry(router)
    if entry is None:
        logger.error("router %s: API key cannot be unsealed; counted as down", router.pk)
        return False, 0
    ok, latency = client.probe(entry)
    return ok, round(latency)


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
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PROBES, len(routers))) as pool:
        outcomes = list(pool.map(lambda router: _probe(client, router), routers))
    now_ms = int(now.timestamp() * 1000)
    results = []
    for router, (ok, latency_ms) in zip(routers, outcomes, strict=True):
        failures = router_health_record(router=router, ok=ok, latency_ms=latency_ms, now=now)
        breaker = _feed_breaker(router.pk, ok=ok, now_ms=now_ms)
        results.append(
            ProbeResult(
                router_id=router.pk,
                pool=router.pool.name,
                name=router.name,
                base_url=router.base_url,
                ok=ok,
                latency_ms=latency_ms,
                consecutive_failures=failures,
                breaker=breaker,
            )
        )
    return results


@transaction.atomic
def router_health_record(*, router: Router, ok: bool, latency_ms: int, now: datetime) -> int:
    """Store one probe's outcome; returns the consecutive failures after it."""
    health = RouterHealth.objects.select_for_update().filter(router=router).first()
    failures = 0 if ok else (health.consecutive_failures + 1 if health else 1)
    last_ok_at = now if ok else (health.last_ok_at if health else None)
    RouterHealth.objects.update_or_create(
        router=router,
        defaults={
            "ok": ok,
            "latency_ms": max(latency_ms, 0),
            "consecutive_failures": failures,
            "checked_at": now,
            "last_ok_at": last_ok_at,
        },
    )
    return failures


def _feed_breaker(router_id: int, *, ok: bool, now_ms: int) -> str:
    try:
        state = faststate.get_client().eval(
            _FEED_BREAKER,
            1,
            breaker_key(router_id),
            1 if ok else 0,
            now_ms,
            settings.BREAKER_FAILURE_THRESHOLD,
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
    try:
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("fast state unavailable: router live state unknown")
        return {}
    live = {}
    for index, router_id in enumerate(ids):
        (state, fails, opened), inflight = replies[2 * index], replies[2 * index + 1]
        opened_ms = int(opened) if opened else None
        breaker = "open" if state == b"open" else "closed"
        if (
            breaker == "open"
            and opened_ms is not None
            and now_ms >= opened_ms + settings.BREAKER_COOLDOWN_MS
        ):
            breaker = "half-open"  # the next request (or probe) may try it
        live[router_id] = RouterLive(
            breaker=breaker, fails=int(fails or 0), opened_ms=opened_ms, inflight=int(inflight)
        )
    return live


@transaction.atomic
def router_breaker_reset(*, router: Router) -> None:
    """Close a router's breaker now (staff know the router is back)."""
    transaction.on_commit(lambda: faststate.get_client().delete(breaker_key(router.pk)))
