"""The gateway's fast-state scripts: admission, failover and settlement (Redis Lua).

Each script is one round trip and atomic in Redis, so limits hold exactly across
any number of gateway processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from apikeys import authcontext
from apikeys.authcontext import AuthContext
from infra import fastkeys, faststate
from pools.catalog import RouteEntry

_LUA = Path(__file__).with_name("lua")


@cache
def _source(name: str) -> str:
    """A script's source, after the fast-state key functions (infra/fastkeys.py) and the
    libraries it uses (common.lua, windows.lua, routers.lua, release.lua)."""
    libraries = {
        "admit": ("common", "windows", "routers"),
        "failover": ("common", "routers"),
        "settle": ("common", "windows", "routers", "release"),
        "reap": ("common", "windows", "routers", "release"),
        "renew": ("common", "windows", "routers", "release"),
    }
    parts = [(_LUA / f"{lib}.lua").read_text() for lib in libraries.get(name, ())]
    return fastkeys.lua_prelude() + "".join(parts) + (_LUA / f"{name}.lua").read_text()


def _script(name: str):
    return faststate.script(_source(name))


@dataclass(slots=True)
class Admission:
    status: str
    ctx: AuthContext | None
    catalog_version: str | None
    pause_message: str
    rpm_limit: int
    rpm_remaining: int
    rpm_reset_ms: int
    tpm_limit: int
    tpm_remaining: int
    tpm_reset_ms: int
    retry_after_ms: int
    router_id: int
    scope: str = ""  # whose limit refused it: "key" or "org" ("" for other answers)


def lease_ms() -> int:
    """How long an admitted request's slots last unless its process renews them."""
    return int(settings.GATEWAY_LEASE_SECONDS * 1000)


def candidates(routes: tuple[RouteEntry, ...], exclude: frozenset[int] = frozenset()) -> list:
    """Flattened (router id, weight, tier) of the active routes' routers, in route priority order."""
    flat: list = []
    tier = 0
    for route in routes:
        if route.pool_status != "active":
            continue
        for router in route.routers:
            if router.id not in exclude:
                flat.extend((router.id, router.weight, tier))
        tier += 1
    return flat


def admit(
    *,
    key_hash: str,
    now_ms: int,
    request_id: str,
    model: str,
    est_tokens: int,
    cands: list,
    refuse: str = "",
    client: str = "",
    est_cost: int = 0,
) -> Admission:
    """`refuse`: a status the caller already decided (e.g. "context_length"); the script
    answers it once the key may use the model, before counting anything. `client`: the
    client's address as apikeys.networks.wire_address writes it (a key's IP allowlist);
    `est_cost`: the request's worst-case cost in micro-USD (a key's budget)."""
    r = _script("admit")(
        args=[
            settings.FAST_STATE_PREFIX,
            key_hash,
            now_ms,
            request_id,
            model,
            est_tokens,
            lease_ms(),
            settings.BREAKER_COOLDOWN_MS,
            settings.BREAKER_PROBE_TTL_MS,
            random.random(),
            random.random(),
            random.random(),
            refuse,
            client,
            est_cost,
            len(cands) // 3,
            *cands,
        ]
    )
    return Admission(
        status=r[0].decode(),
        ctx=authcontext.decode(r[1]),
        catalog_version=r[2].decode() or None,
        pause_message=r[3].decode(),
        rpm_limit=r[4],
        rpm_remaining=r[5],
        rpm_reset_ms=r[6],
        tpm_limit=r[7],
        tpm_remaining=r[8],
        tpm_reset_ms=r[9],
        retry_after_ms=r[10],
        router_id=int(r[11]),
        scope=r[12].decode(),
    )


def failover(*, now_ms: int, request_id: str, failed_router_id: int, cands: list) -> int:
    """Count a router failure and pick another router (0: none left)."""
    return int(
        _script("failover")(
            args=[
                settings.FAST_STATE_PREFIX,
                now_ms,
                request_id,
                failed_router_id,
                settings.BREAKER_FAILURE_THRESHOLD,
                lease_ms(),
                settings.BREAKER_COOLDOWN_MS,
                settings.BREAKER_PROBE_TTL_MS,
                random.random(),
                random.random(),
                len(cands) // 3,
                *cands,
            ]
        )
    )


def settle(**kwargs) -> None:
    """Settle a request and wait for Redis to confirm (see settle_begin)."""
    settle_begin(**kwargs).wait()


def settle_begin(
    *,
    request_id: str,
    ctx: AuthContext,
    router_id: int | None,
    router_outcome: str,
    admitted_s: int,
    est_tokens: int,
    actual_tokens: int,
    served: bool,
    now_ms: int,
    unadmit: bool = False,
    reserved_cost: int = 0,
    actual_cost: int = 0,
):
    """Send a request's settlement; `.wait()` on the answer reads Redis's reply (1, or 0
    when the reaper had settled it already), so the caller can write to Postgres meanwhile.
    `unadmit` also takes back its requests/min count (it never ran). For a key with a
    budget, `reserved_cost` (what admission reserved) is replaced by `actual_cost`."""
    return _script("settle").begin(
        args=[
            settings.FAST_STATE_PREFIX,
            request_id,
            ctx.key_id,
            ctx.org_id,
            ctx.period_start_ms,
            router_id or "",
            router_outcome,
            admitted_s,
            est_tokens,
            actual_tokens,
            1 if served else 0,
            settings.BREAKER_FAILURE_THRESHOLD,
            now_ms,
            ctx.limits.window_bucket_seconds,
            1 if unadmit else 0,
            ctx.budget.start_ms if ctx.budget is not None else "",
            reserved_cost,
            actual_cost,
        ]
    )


def serving(*, request_id: str, bill: str, prompt_tokens: int) -> bool:
    """Record a stream's bill in its live entry before its first content goes out."""
    return bool(
        _script("serving")(args=[settings.FAST_STATE_PREFIX, request_id, bill, prompt_tokens])
    )


def renew(*, now_ms: int, leases: list) -> int:
    """Renew leases given as (request_id, key_id, org_id, router_id or "", sent tokens or -1)."""
    args: list = [settings.FAST_STATE_PREFIX, now_ms, lease_ms(), len(leases)]
    for lease in leases:
        args.extend(lease)
    return int(_script("renew")(args=args))


def reap(*, now_ms: int, limit: int, reclaim_ms: int) -> list[tuple[str, dict[str, str]]]:
    """Settle requests whose leases ran out; those that had sent content, with their entries."""
    flat = _script("reap")(
        args=[
            settings.FAST_STATE_PREFIX,
            now_ms,
            limit,
            settings.BREAKER_FAILURE_THRESHOLD,
            reclaim_ms,
        ]
    )
    out = []
    for i in range(0, len(flat), 2):
        pairs = flat[i + 1]
        fields = {_text(pairs[j]): _text(pairs[j + 1]) for j in range(0, len(pairs), 2)}
        out.append((_text(flat[i]), fields))
    return out


def reaped_done(request_ids: list[str]) -> None:
    """Forget reaped requests whose records are written."""
    if not request_ids:
        return
    pipe = faststate.get_client().pipeline(transaction=False)
    pipe.zrem(fastkeys.REAPED(), *request_ids)
    pipe.delete(*(fastkeys.LIVE(request_id=rid) for rid in request_ids))
    pipe.execute()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
