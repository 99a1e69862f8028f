"""When fast state (Redis) cannot be reached: refuse at once, or serve recent keys.

Admission is one Redis call; without Redis no limit can hold across processes. The
gateway then answers 503 `fast_state_unavailable` with a `retry-after`, as soon as the
Redis client gives up (FAST_STATE_TIMEOUT_SECONDS; at once when the port is closed), and
takes requests again on the first call after Redis is back: no restart.

FAST_STATE_DEGRADED=serve_recent_keys trades exact limits for availability: a key this
process admitted within FAST_STATE_DEGRADED_KEY_SECONDS is served with its last-known
auth context (status, expiry and entitlement still checked) and limits counted in this
process only (its plan's requests per minute and concurrency, per key, in each process:
N processes together may allow N times them), with no allowance reservation and a router
picked at random among the model's routers this process last saw. Usage is written to
Postgres as always, and once Redis answers again the allowance counters of the orgs served
meanwhile are rebuilt from it (quota_reconcile). The default, `refuse`, keeps every limit
exact.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict, deque

import redis
from django.conf import settings

from apikeys.authcontext import AuthContext
from gateway import limits
from pools.catalog import Catalog
from portal.errors import PortalError

# What a client gets from the fast-state client when Redis is away (the lean clients raise
# redis-py's exception types too).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)
REFUSE, SERVE_RECENT = "refuse", "serve_recent_keys"
_MAX_KEYS = 10_000

_lock = threading.Lock()
_recent: OrderedDict[str, tuple[AuthContext, float]] = OrderedDict()  # key hash -> (ctx, seen)
_starts: dict[str, deque] = {}  # key id -> monotonic admission times (last minute)
_running: dict[str, int] = {}  # key id -> requests in flight in this process
_served_orgs: set[str] = set()  # orgs served without fast state, to reconcile after


def enabled() -> bool:
    return settings.FAST_STATE_DEGRADED == SERVE_RECENT


def remember(cache_key: str, ctx: AuthContext) -> None:
    """A key admitted through fast state: servable for a while should Redis go away."""
    if not enabled():
        return
    with _lock:
        _recent[cache_key] = (ctx, time.monotonic())
        _recent.move_to_end(cache_key)
        while len(_recent) > _MAX_KEYS:
            _recent.popitem(last=False)


def unavailable() -> PortalError:
    return PortalError("fast_state_unavailable")


def admit(
    *,
    cache_key: str,
    model: str,
    catalog: Catalog | None,
    now_ms: int,
    refuse: str = "",
    client_ip: str | None = None,
) -> limits.Admission:
    """Admission without fast state, in admit.lua's order (gateway/refusals.py) where it
    still applies; raises `unavailable()` for a key this process has not seen lately, and
    for a key with a budget (its spend lives in fast state: it cannot be checked)."""
    if not enabled() or catalog is None:
        raise unavailable()
    with _lock:
        known = _recent.get(cache_key)
    if known is None or time.monotonic() - known[1] > settings.FAST_STATE_DEGRADED_KEY_SECONDS:
        raise unavailable()
    ctx = known[0]
    refusal = ctx.refusal(now_ms=now_ms)
    if refusal is not None:
        return _answer(refusal, ctx)
    if not ctx.ip_allowed(client_ip):
        return _answer("ip_not_allowed", ctx)
    if ctx.budget is not None:
        raise unavailable()
    entry = catalog.resolve(model)
    if entry is None:
        return _answer("model_not_found", ctx)
    if entry.status != "enabled":
        return _answer("model_disabled", ctx)
    if not ctx.allows(entry.name):
        return _answer("model_not_allowed", ctx)
    if refuse:
        return _answer(refuse, ctx)
    routers = [router for route in entry.serving_routes() for router in route.routers]
    if not routers:
        return _answer("no_router", ctx, retry_after_ms=1000)
    now = time.monotonic()
    with _lock:
        starts = _starts.setdefault(ctx.key_id, deque())
        while starts and now - starts[0] >= 60:
            starts.popleft()
        own = ctx.effective_key_limits
        if len(starts) >= own.requests_per_minute:
            wait = int((60 - (now - starts[0])) * 1000)
            return _answer("rate_requests", ctx, retry_after_ms=max(wait, 1000))
        if _running.get(ctx.key_id, 0) >= own.concurrent_requests:
            return _answer("concurrency", ctx, retry_after_ms=1000)
        starts.append(now)
        _running[ctx.key_id] = _running.get(ctx.key_id, 0) + 1
        _served_orgs.add(ctx.org_id)
        left = own.requests_per_minute - len(starts)
    return _answer("ok", ctx, router_id=random.choice(routers).id, rpm_left=left)


def _answer(
    status: str, ctx: AuthContext, *, retry_after_ms: int = 0, router_id: int = 0, rpm_left: int = 0
) -> limits.Admission:
    return limits.Admission(
        status=status,
        ctx=ctx,
        catalog_version=None,
        pause_message="",
        rpm_limit=ctx.effective_key_limits.requests_per_minute,
        rpm_remaining=rpm_left,
        rpm_reset_ms=60_000,
        tpm_limit=ctx.limits.tokens_per_minute,
        tpm_remaining=ctx.limits.tokens_per_minute,
        tpm_reset_ms=60_000,
        retry_after_ms=retry_after_ms,
        router_id=router_id,
    )


def release(ctx: AuthContext) -> None:
    with _lock:
        left = _running.get(ctx.key_id, 0) - 1
        if left > 0:
            _running[ctx.key_id] = left
        else:
            _running.pop(ctx.key_id, None)


def reconcile_served_orgs(reconcile) -> int:
    """Once fast state answers again: `reconcile(org_ids)` the orgs served without it (their
    allowance counters missed that usage); kept for the next round if it fails."""
    with _lock:
        orgs = list(_served_orgs)
        _served_orgs.clear()
    if not orgs:
        return 0
    try:
        reconcile(orgs)
    except Exception:
        with _lock:
            _served_orgs.update(orgs)
        raise
    return len(orgs)
