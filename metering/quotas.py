"""Allowance counters in fast state, and rebuilding them from Postgres.

`quota:<org>:<period start ms>` is a hash: `r` requests and `t` tokens used in the
org's current allowance period. The gateway's admission script reserves into it,
settlement corrects it to what was served, and it is seeded from the usage events
when missing. `quota_reconcile` sets it to the durable truth for every org, so after
Redis loses its data (or a counter drifts) enforcement resumes from Postgres.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Count, Sum

from accounts.limits import allowance_period
from accounts.models import PlanSubscription
from accounts.selectors import active_subscriptions
from accounts.services import subscription_period
from infra import fastkeys, faststate
from metering.models import UsageEvent

_ORGS_PER_QUERY = 1000
_GRACE_MS = 86_400_000  # counters outlive their period by a day


def quota_key(*, org_id: str, period_start_ms: int) -> str:
    return fastkeys.QUOTA(org_id=org_id, period_start_ms=period_start_ms)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def quota_seed(
    *,
    org_id: str,
    period_start_ms: int,
    period_end_ms: int,
    requests: int,
    tokens: int,
    now_ms: int,
) -> None:
    """Start the allowance counters from the durable totals, unless another process already did."""
    name = quota_key(org_id=org_id, period_start_ms=period_start_ms)
    pipe = faststate.get_client().pipeline()
    pipe.hsetnx(name, "r", requests)
    pipe.hsetnx(name, "t", tokens)
    pipe.pexpire(name, max(period_end_ms - now_ms, 0) + _GRACE_MS)
    pipe.execute()


def current_period(*, subscription: PlanSubscription, now: datetime) -> tuple[datetime, datetime]:
    """The allowance period the gateway counts `now` in (the auth context's rule): the
    subscription's period, from the org's one-off allowance reset if one falls in it."""
    start, end = subscription_period(subscription=subscription, now=now)
    return allowance_period(org=subscription.org, start=start, end=end)


@dataclass(frozen=True)
class QuotaChange:
    org_id: UUID
    key: str
    before: tuple[int, int] | None
    after: tuple[int, int]


@dataclass
class ReconcileSummary:
    orgs: int = 0
    changed: int = 0
    unchanged: int = 0
    changes: list[QuotaChange] = field(default_factory=list)


def _durable_totals(
    *, org_ids: list[UUID], start: datetime, end: datetime
) -> dict[UUID, tuple[int, int]]:
    rows = (
        UsageEvent.objects.filter(org_id__in=org_ids, created_at__gte=start, created_at__lt=end)
        .values("org_id")
        .annotate(n=Count("id"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
        .order_by()
    )
    return {row["org_id"]: (row["n"], row["p"] + row["c"]) for row in rows}


def _read(names: list[str]) -> list[tuple[int, int] | None]:
    pipe = faststate.get_client().pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "r", "t")
    current = []
    for r, t in pipe.execute():
        current.append(None if r is None else (int(r), int(t or 0)))
    return current


def quota_reconcile(
    *,
    now: datetime,
    org_ids: list[UUID] | None = None,
    dry_run: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ReconcileSummary:
    """Set every active org's allowance counters to its usage events in its current period.

    Overwrites, so requests in flight at that moment lose their reservation (their
    settlement then corrects from a lower base): limits loosen by at most those
    requests until the next reconcile. Losing Redis loses nothing durable.
    """
    subs = active_subscriptions()
    if org_ids is not None:
        subs = subs.filter(org_id__in=org_ids)
    by_period: dict[tuple[datetime, datetime], list[UUID]] = defaultdict(list)
    subs = subs.select_related("org").only(
        "org_id", "current_period_start", "current_period_end", "org__allowance_reset_at"
    )
    for sub in subs.order_by("org_id"):
        by_period[current_period(subscription=sub, now=now)].append(sub.org_id)
    summary = ReconcileSummary()
    now_ms = _ms(now)
    client = faststate.get_client()
    for (start, end), orgs in by_period.items():
        for i in range(0, len(orgs), _ORGS_PER_QUERY):
            chunk = orgs[i : i + _ORGS_PER_QUERY]
            durable = _durable_totals(org_ids=chunk, start=start, end=end)
            names = [quota_key(org_id=str(org), period_start_ms=_ms(start)) for org in chunk]
            pipe = client.pipeline(transaction=False)
            for org, name, before in zip(chunk, names, _read(names), strict=True):
                after = durable.get(org, (0, 0))
                summary.orgs += 1
                if before == after:
                    summary.unchanged += 1
                    continue
                summary.changed += 1
                summary.changes.append(QuotaChange(org, name, before, after))
                pipe.hset(name, mapping={"r": after[0], "t": after[1]})
                pipe.pexpire(name, max(_ms(end) - now_ms, 0) + _GRACE_MS)
            if not dry_run:
                pipe.execute()
            if on_progress is not None:
                on_progress(len(chunk))
    return summary
