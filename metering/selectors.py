"""Metering reads for the dashboard and the gateway: usage, request logs, the ledger, billing periods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay

from accounts.models import Organization
from apikeys.models import ApiKey
from metering.buckets import DAY, HOUR, floor_day, is_midnight, steps
from metering.models import NO_KEY, BillingPeriod, LedgerEntry, RequestLog, UsageEvent, UsageRollup
from metering.periods import period_totals


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    tokens: int


def org_usage_between(*, org: Organization, start: datetime, end: datetime) -> UsageTotals:
    row = UsageEvent.objects.filter(org=org, created_at__gte=start, created_at__lt=end).aggregate(
        requests=Count("id"),
        prompt=Coalesce(Sum("prompt_tokens"), 0),
        completion=Coalesce(Sum("completion_tokens"), 0),
    )
    return UsageTotals(requests=row["requests"], tokens=row["prompt"] + row["completion"])


# --- the dashboard's usage, request, ledger and billing reads ------------------------------------

GROUP_BY = ("day", "hour", "model", "key")
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "cost")


@dataclass(frozen=True)
class UsageReport:
    org_id: str
    start: datetime
    end: datetime
    group_by: str
    granularity: str
    results: list[dict]
    totals: dict


def _counts(row: dict | None) -> dict:
    counts = {name: (row or {}).get(name) or 0 for name in _COUNTS}
    counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
    return counts


def _row(*, bucket=None, model=None, key_id=None, key_name=None, counts: dict) -> dict:
    return {"bucket": bucket, "model": model, "key_id": key_id, "key_name": key_name, **counts}


def usage_rollups(
    *, org: Organization, start: datetime, end: datetime, group_by: str
) -> tuple[str, QuerySet[UsageRollup]]:
    """The rollups a usage read of [start, end) sums, and their granularity.

    Whole-day ranges read the day buckets; any other range (or group_by=hour) reads hour
    buckets, so every grouping (and the CSV export) of the same range has the same totals.
    """
    use_days = group_by != "hour" and is_midnight(start) and is_midnight(end)
    granularity = UsageRollup.Granularity.DAY if use_days else UsageRollup.Granularity.HOUR
    rollups = UsageRollup.objects.filter(
        org=org, granularity=granularity, bucket_start__gte=start, bucket_start__lt=end
    ).order_by()
    return granularity, rollups


def bucket_of(*, granularity: str, group_by: str):
    """The time bucket of a rollup row: its own start, or its day when days are summed from hours."""
    if group_by == "day" and granularity == UsageRollup.Granularity.HOUR:
        return TruncDay("bucket_start", tzinfo=UTC)
    return F("bucket_start")


def org_usage_report(
    *, org: Organization, start: datetime, end: datetime, group_by: str
) -> UsageReport:
    """Usage in [start, end) (whole hours) from the rollups, grouped by day, hour, model or key, with totals.

    Whole-day ranges read the day buckets; any other range reads hour buckets, so
    every grouping of the same range has the same totals. Time groupings list empty
    buckets too.
    """
    granularity, rollups = usage_rollups(org=org, start=start, end=end, group_by=group_by)
    sums = {name: Sum(name) for name in _COUNTS}
    totals = _counts(rollups.aggregate(**sums))
    if group_by in ("day", "hour"):
        step = DAY if group_by == "day" else HOUR
        grouped = rollups.annotate(group=bucket_of(granularity=granularity, group_by=group_by))
        found = {r["group"]: r for r in grouped.values("group").annotate(**sums)}
        first = floor_day(start) if group_by == "day" else start
        results = [_row(bucket=at, counts=_counts(found.get(at))) for at in steps(first, end, step)]
    elif group_by == "model":
        rows = rollups.values("model_name").annotate(**sums).order_by("model_name")
        results = [_row(model=r["model_name"], counts=_counts(r)) for r in rows]
    else:
        rows = list(rollups.values("api_key_id").annotate(**sums).order_by("api_key_id"))
        names = dict(
            ApiKey.objects.filter(org=org, pk__in=[r["api_key_id"] for r in rows]).values_list(
                "id", "name"
            )
        )
        results = [
            _row(
                key_id=None if r["api_key_id"] == NO_KEY else r["api_key_id"],
                key_name=names.get(r["api_key_id"]),
                counts=_counts(r),
            )
            for r in rows
        ]
    return UsageReport(str(org.pk), start, end, group_by, granularity, results, totals)


def org_request_logs(
    *,
    org: Organization,
    key_id: UUID | None = None,
    model: str | None = None,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[RequestLog]:
    """The org's request logs, newest first; `status` is a code ("429") or a class ("5xx")."""
    logs = RequestLog.objects.filter(org=org)
    if key_id is not None:
        logs = logs.filter(api_key_id=key_id)
    if model:
        logs = logs.filter(model_name=model)
    if status:
        if status.endswith("xx"):
            low = int(status[0]) * 100
            logs = logs.filter(status_code__gte=low, status_code__lt=low + 100)
        else:
            logs = logs.filter(status_code=int(status))
    if start is not None:
        logs = logs.filter(created_at__gte=start)
    if end is not None:
        logs = logs.filter(created_at__lt=end)
    return logs.order_by("-created_at", "-id")


def org_ledger_entries(
    *, org: Organization, period_id: int | None = None, kind: str | None = None
) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.filter(org=org)
    if period_id is not None:
        entries = entries.filter(billing_period_id=period_id)
    if kind:
        entries = entries.filter(kind=kind)
    return entries.order_by("-created_at", "-id")


def org_billing_periods(*, org: Organization) -> QuerySet[BillingPeriod]:
    return BillingPeriod.objects.filter(org=org).select_related("plan").order_by("-start", "-id")


MANUAL_TOTALS = ("credits", "adjustments")


def with_running_totals(periods: list[BillingPeriod]) -> list[BillingPeriod]:
    """Open periods show their totals so far (closed ones keep the totals frozen at close);
    every period gets its `credits` and `adjustments` (nothing is booked into a closed period,
    so for those they are what they were at close)."""
    totals = period_totals(period_ids=[p.pk for p in periods]) if periods else {}
    for period in periods:
        found = totals.get(period.pk, {})
        is_open = period.status == BillingPeriod.Status.OPEN
        for name, value in found.items():
            if is_open or name in MANUAL_TOTALS:
                setattr(period, name, value)
    return periods
