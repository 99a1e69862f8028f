"""What the ops dashboard shows, computed from request logs, usage events, router health
and fast state: per pool and router health, in-flight, 5xx rate and p50/p95 latency over
the last hour; requests and tokens per minute; the top orgs by usage this period; routers
whose usage claims were capped (over-reports, gateway/tokens.py) over OVER_REPORT_WINDOW.

Percentiles are computed in Postgres (`percentile_cont`); on SQLite (the embedded
default) in Python over the most recent SAMPLE_LIMIT requests of the window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, Sum
from django.db.models.functions import Coalesce, TruncMinute

from accounts.models import Organization
from accounts.selectors import active_subscriptions
from accounts.services import period_containing
from metering.models import RequestLog, UsageEvent, UsageRollup
from ops.models import AccessPause
from ops.services import access_pause_get
from pools.health import routers_live
from pools.models import Router, RouterHealth, RouterPool

WINDOW = timedelta(hours=1)
OVER_REPORT_WINDOW = timedelta(hours=24)
SAMPLE_LIMIT = 20_000
TOP_ORGS = 10


class PercentileCont(Aggregate):
    """Postgres `percentile_cont(fraction) WITHIN GROUP (ORDER BY expr)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, *, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as `percentile_cont` does."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0  # 5xx answers: the Portal's or a router's fault, not the customer's
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass
class RouterRow:
    id: int
    name: str
    base_url: str
    enabled: bool
    up: bool | None
    probe_ms: int | None
    checked_at: datetime | None
    consecutive_failures: int
    breaker: str
    inflight: int | None
    stats: Stats
    slow: bool = False  # the probe's one-token completion was slower than ROUTER_SLOW_SECONDS
    completion_ms: int | None = None
    over_reports: int = 0  # answers whose usage claim was capped, over OVER_REPORT_WINDOW


@dataclass
class PoolRow:
    id: int
    name: str
    status: str
    routers: list[RouterRow] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    @property
    def inflight(self) -> int:
        return sum(r.inflight or 0 for r in self.routers)

    @property
    def routers_up(self) -> int:
        return sum(1 for r in self.routers if r.enabled and r.up)

    @property
    def routers_enabled(self) -> int:
        return sum(1 for r in self.routers if r.enabled)


@dataclass
class Minute:
    at: datetime
    requests: int = 0
    errors: int = 0
    tokens: int = 0


@dataclass
class OrgUsage:
    org_id: str
    name: str
    status: str
    plan: str
    requests: int
    tokens: int
    cost_micro_usd: int


@dataclass
class Dashboard:
    now: datetime
    since: datetime
    period_start: datetime
    period_end: datetime
    totals: Stats
    pools: list[PoolRow]
    minutes: list[Minute]
    top_orgs: list[OrgUsage]
    pause: AccessPause


def _window(now: datetime):
    return RequestLog.objects.filter(created_at__gte=now - WINDOW, created_at__lt=now)


def _stats_by(queryset, key: str | None) -> dict[object, Stats]:
    """Stats per value of `key` (None: one group under the key None)."""
    grouped = queryset.values(key) if key else queryset
    counts = {"requests": Count("id"), "errors": Count("id", filter=Q(status_code__gte=500))}
    if connection.vendor == "postgresql":
        counts["p50"] = PercentileCont("latency_ms", fraction=0.5)
        counts["p95"] = PercentileCont("latency_ms", fraction=0.95)
    rows = grouped.order_by().annotate(**counts) if key else [grouped.aggregate(**counts)]
    stats = {
        (row[key] if key else None): Stats(
            requests=row["requests"],
            errors=row["errors"],
            p50_ms=row.get("p50"),
            p95_ms=row.get("p95"),
        )
        for row in rows
    }
    if connection.vendor != "postgresql":
        samples: dict[object, list[float]] = defaultdict(list)
        fields = (key, "latency_ms") if key else ("latency_ms",)
        for row in queryset.order_by("-created_at").values_list(*fields)[:SAMPLE_LIMIT]:
            samples[row[0] if key else None].append(float(row[-1]))
        for group, values in samples.items():
            values.sort()
            if group in stats:
                stats[group].p50_ms = percentile(values, 0.5)
                stats[group].p95_ms = percentile(values, 0.95)
    return stats


def _pools(now: datetime) -> list[PoolRow]:
    window = _window(now)
    by_router = _stats_by(window.filter(router_id__isnull=False), "router_id")
    routers = list(Router.objects.select_related("pool").order_by("pool__name", "name"))
    health = {h.router_id: h for h in RouterHealth.objects.filter(router__in=routers)}
    over_reports = _over_reports(now)
    live = routers_live([r.pk for r in routers], now_ms=int(now.timestamp() * 1000))
    pools = {
        p.pk: PoolRow(id=p.pk, name=p.name, status=p.status)
        for p in RouterPool.objects.order_by("name")
    }
    for router in routers:
        h, state = health.get(router.pk), live.get(router.pk)
        pools[router.pool_id].routers.append(
            RouterRow(
                id=router.pk,
                name=router.name,
                base_url=router.base_url,
                enabled=router.enabled,
                up=h.ok if h else None,
                probe_ms=h.latency_ms if h else None,
                checked_at=h.checked_at if h else None,
                consecutive_failures=h.consecutive_failures if h else 0,
                breaker=state.breaker if state else "unknown",
                inflight=state.inflight if state else None,
                stats=by_router.get(router.pk, Stats()),
                slow=h.slow if h else False,
                completion_ms=h.completion_ms if h else None,
                over_reports=over_reports.get(router.pk, 0),
            )
        )
    for pool in pools.values():
        ids = [r.id for r in pool.routers]
        if ids:
            pool.stats = _stats_by(window.filter(router_id__in=ids), None)[None]
    return list(pools.values())


def _over_reports(now: datetime) -> dict[int, int]:
    """Capped usage claims per router id over OVER_REPORT_WINDOW (a small partial index)."""
    rows = (
        RequestLog.objects.filter(
            usage_capped=True, created_at__gte=now - OVER_REPORT_WINDOW, router_id__isnull=False
        )
        .values("router_id")
        .order_by()
        .annotate(n=Count("id"))
    )
    return {row["router_id"]: row["n"] for row in rows}


def _minutes(now: datetime) -> list[Minute]:
    end = now.replace(second=0, microsecond=0)
    start = end - WINDOW + timedelta(minutes=1)
    rows = (
        RequestLog.objects.filter(created_at__gte=start, created_at__lt=end + timedelta(minutes=1))
        .annotate(minute=TruncMinute("created_at"))
        .values("minute")
        .order_by("minute")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status_code__gte=500)),
            tokens=Coalesce(Sum(F("prompt_tokens") + F("completion_tokens")), 0),
        )
    )
    by_minute = {row["minute"].replace(tzinfo=now.tzinfo): row for row in rows}
    minutes = []
    for index in range(int(WINDOW.total_seconds() // 60)):
        at = start + timedelta(minutes=index)
        row = by_minute.get(at)
        minutes.append(
            Minute(at=at, requests=row["requests"], errors=row["errors"], tokens=row["tokens"])
            if row
            else Minute(at=at)
        )
    return minutes


def _top_orgs(start: datetime, end: datetime) -> list[OrgUsage]:
    """Usage this period from the hour rollups plus the events not rolled up yet.

    Cheap at any volume (the rollups are small); an event rolled up between the two
    reads may be missed once, which a dashboard can afford.
    """
    totals: dict[object, list[int]] = defaultdict(lambda: [0, 0, 0])
    rolled = (
        UsageRollup.objects.filter(
            granularity=UsageRollup.Granularity.HOUR, bucket_start__gte=start, bucket_start__lt=end
        )
        .values("org_id")
        .order_by()
        .annotate(
            n=Sum("requests"), t=Sum(F("prompt_tokens") + F("completion_tokens")), c=Sum("cost")
        )
    )
    pending = (
        UsageEvent.objects.filter(
            rolled_up_at__isnull=True, created_at__gte=start, created_at__lt=end
        )
        .values("org_id")
        .order_by()
        .annotate(n=Count("id"), t=Sum(F("prompt_tokens") + F("completion_tokens")), c=Sum("cost"))
    )
    for row in [*rolled, *pending]:
        total = totals[row["org_id"]]
        total[0] += row["n"] or 0
        total[1] += row["t"] or 0
        total[2] += row["c"] or 0
    top = sorted(totals.items(), key=lambda item: (-item[1][1], str(item[0])))[:TOP_ORGS]
    orgs = Organization.objects.in_bulk([org_id for org_id, _ in top])
    plans = dict(active_subscriptions().filter(org_id__in=orgs).values_list("org_id", "plan__name"))
    return [
        OrgUsage(
            org_id=str(org_id),
            name=orgs[org_id].name if org_id in orgs else str(org_id),
            status=orgs[org_id].status if org_id in orgs else "",
            plan=plans.get(org_id, "-"),
            requests=requests,
            tokens=tokens,
            cost_micro_usd=cost,
        )
        for org_id, (requests, tokens, cost) in top
    ]


def dashboard_build(*, now: datetime) -> Dashboard:
    period_start, period_end = period_containing(now=now)
    return Dashboard(
        now=now,
        since=now - WINDOW,
        period_start=period_start,
        period_end=period_end,
        totals=_stats_by(_window(now), None)[None],
        pools=_pools(now),
        minutes=_minutes(now),
        top_orgs=_top_orgs(period_start, period_end),
        pause=access_pause_get(),
    )
