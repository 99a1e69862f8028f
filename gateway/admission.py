"""Steps 2–8 of the flow: one admission script call on a warm cache.

A cold auth context, a cold allowance counter or a catalog change costs one more
round (and a Postgres read); every later request is back to one Redis call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from apikeys.authcontext import AuthContext, refresh_auth_context
from apikeys.networks import wire_address
from apikeys.providers import KeyIdentity
from gateway import limits
from metering.budgets import budget_seed, key_spend_between
from metering.quotas import quota_seed
from metering.selectors import org_usage_between
from pools.catalog import Catalog, ModelEntry, current_catalog

_MAX_ROUNDS = 6
# The model of a listing (GET /v1/models): the key's checks and one request against its
# requests/min, nothing reserved (admit.lua).
LISTING = "*"
KEY_CHECK = "?"  # the key's checks alone: nothing counted (count_tokens)
# The catalog version this process last read from fast state: the first request after a
# start asks for it; later ones pass it so current_catalog() keeps its snapshot.
_seen_version: str | None = None
# Keys this process last saw with a budget (by cache key): only their requests price their
# worst case before asking; another key's request sends no cost, and admission answers
# "cost_miss" if its key has a budget after all.
_budgeted: dict[str, bool] = {}


@dataclass(slots=True)
class Admitted:
    adm: limits.Admission
    catalog: Catalog
    entry: ModelEntry | None
    now_ms: int


def _model_arg(entry: ModelEntry | None) -> str:
    if entry is None:
        return ""
    return entry.name if entry.status == "enabled" else "!" + entry.name


def _seed_quota(ctx: AuthContext, now: datetime, now_ms: int) -> None:
    start = datetime.fromtimestamp(ctx.period_start_ms / 1000, tz=now.tzinfo)
    end = datetime.fromtimestamp(ctx.period_end_ms / 1000, tz=now.tzinfo)

    totals = org_usage_between(org=ctx.org_id, start=start, end=end)
    quota_seed(
        org_id=ctx.org_id,
        period_start_ms=ctx.period_start_ms,
        period_end_ms=ctx.period_end_ms,
        requests=totals.requests,
        tokens=totals.tokens,
        now_ms=now_ms,
    )


def _seed_budget(ctx: AuthContext, now: datetime, now_ms: int) -> None:
    budget = ctx.budget
    start = datetime.fromtimestamp(budget.start_ms / 1000, tz=now.tzinfo)
    end = datetime.fromtimestamp(budget.end_ms / 1000, tz=now.tzinfo)
    budget_seed(
        key_id=ctx.key_id,
        period_start_ms=budget.start_ms,
        period_end_ms=budget.end_ms,
        spent=key_spend_between(org_id=ctx.org_id, key_id=ctx.key_id, start=start, end=end),
        now_ms=now_ms,
    )


def admit(
    *,
    identity: KeyIdentity,
    request_id: str,
    model: str,
    estimate: Callable[[ModelEntry | None], int],
    now: datetime,
    refuse: Callable[[ModelEntry | None], str] | None = None,
    cost: Callable[[ModelEntry | None], int] | None = None,
    client_ip: str | None = None,
) -> Admitted:
    """Admit one request for `model` (a public name); the answer says yes, or why not.

    `estimate(entry)` gives the request's worst-case tokens for the resolved model;
    `refuse(entry)`, called after it, a refusal the caller decided for that model ("" for
    none), which admission answers once the key checks pass and before anything is counted;
    `cost(entry)`, the request's worst-case cost in micro-USD (a key's budget reserves it).
    `client_ip` is matched against the key's IP allowlist.
    """
    global _seen_version
    now_ms = int(now.timestamp() * 1000)
    catalog = current_catalog(_seen_version)
    client = wire_address(client_ip)
    priced = _budgeted.get(identity.cache_key, False)
    pricing: tuple[ModelEntry | None, int] = (None, -1)
    for _ in range(_MAX_ROUNDS):
        entry = catalog.resolve(model) if model not in (LISTING, KEY_CHECK) else None
        cands = limits.candidates(entry.routes) if entry is not None else []
        est_tokens = estimate(entry)
        est_cost = -1
        if priced and cost is not None:
            if pricing[0] is not entry:  # priced once per resolved model, not per round
                pricing = (entry, cost(entry))
            est_cost = pricing[1]
        adm = limits.admit(
            key_hash=identity.cache_key,
            now_ms=now_ms,
            request_id=request_id,
            model=model if model in (LISTING, KEY_CHECK) else _model_arg(entry),
            est_tokens=est_tokens,
            cands=cands,
            refuse=refuse(entry) if refuse is not None else "",
            client=client,
            est_cost=est_cost,
        )
        if adm.status == "miss":
            refresh_auth_context(identity=identity, now=now)
            continue
        if adm.status == "quota_miss":
            _seed_quota(adm.ctx, now, now_ms)
            continue
        if adm.status == "budget_miss":
            _seed_budget(adm.ctx, now, now_ms)
            continue
        if adm.status == "cost_miss":
            priced = True
            continue
        if adm.catalog_version != catalog.version:
            # The catalog changed since this process loaded it: release what was taken and
            # decide again against the new one.
            if adm.status == "ok":
                release(
                    adm=adm,
                    request_id=request_id,
                    est_tokens=est_tokens,
                    est_cost=max(est_cost, 0),
                    now_ms=now_ms,
                )
            _seen_version = adm.catalog_version
            catalog = current_catalog(adm.catalog_version)
            continue
        _remember_budgeted(identity.cache_key, adm.ctx)
        return Admitted(adm=adm, catalog=catalog, entry=entry, now_ms=now_ms)
    raise RuntimeError("admission did not settle; is the fast state flapping?")


def _remember_budgeted(cache_key: str, ctx: AuthContext | None) -> None:
    budgeted = ctx is not None and ctx.budget is not None
    if _budgeted.get(cache_key, False) != budgeted:
        if len(_budgeted) > 10_000:
            _budgeted.clear()
        _budgeted[cache_key] = budgeted


def release(
    *, adm: limits.Admission, request_id: str, est_tokens: int, est_cost: int, now_ms: int
) -> None:
    """Undo an admission decided against a stale catalog: as if it never happened (its
    tokens and, for a key with a budget, its reserved cost given back)."""
    limits.settle(
        request_id=request_id,
        ctx=adm.ctx,
        router_id=adm.router_id or None,
        router_outcome="",
        admitted_s=now_ms // 1000,
        est_tokens=est_tokens,
        actual_tokens=0,
        served=False,
        now_ms=now_ms,
        unadmit=True,
        reserved_cost=est_cost,
    )
