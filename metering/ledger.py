"""The billing ledger: each org's usage charged per closed hour, equal to its priced events.

Every posting is a difference: what the hour's usage events add up to, minus what the
ledger already holds for that org and hour. The first posting of an (org, hour) is
its `usage` entry (`usage:<org>:<hour>`); a late event that lands after it becomes an
`adjustment` keyed by how many entries came before (`usage-adjustment:<org>:<hour>:<n>`).
Keys are unique, so two workers computing the same posting insert it once, and a
re-run finds no difference and posts nothing. History is never rewritten. Credits and
manual adjustments are `metering.adjustments`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour

from metering.buckets import HOUR, floor_hour, iso
from metering.cursors import cursor_advance, cursor_read
from metering.models import BillingPeriod, LedgerEntry, UsageEvent, UsageRollup
from metering.periods import billing_period_for

LEDGER_CURSOR = "ledger"
# Buckets changed this long before the previous run are re-checked: covers rollup
# transactions that began before it and committed after it.
RECHECK_MARGIN = timedelta(minutes=15)
_ORGS_PER_QUERY = 500


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.requests - other.requests,
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            self.cost - other.cost,
        )

    def __bool__(self) -> bool:
        return any((self.requests, self.prompt_tokens, self.completion_tokens, self.cost))


@dataclass(frozen=True)
class Posting:
    org_id: UUID
    hour: datetime
    kind: str
    idempotency_key: str
    delta: Usage


@dataclass
class PostingSummary:
    hours: int = 0
    org_hours: int = 0
    usage_entries: int = 0
    adjustments: int = 0
    duplicates: int = 0
    amount: int = 0
    postings: list[Posting] = field(default_factory=list)

    def record(self, posting: Posting) -> None:
        if posting.kind == LedgerEntry.Kind.USAGE:
            self.usage_entries += 1
        else:
            self.adjustments += 1
        self.amount += posting.delta.cost
        self.postings.append(posting)


def require_int(value: object, name: str) -> int:
    """Money and counts are integers; a float (or Decimal) reaching a stored amount is a bug."""
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def ledger_lag() -> timedelta:
    """How long after its end an hour counts as closed: longer than any request takes to commit."""
    return timedelta(seconds=settings.METERING_LEDGER_LAG_SECONDS)


def closed_before(*, now: datetime, lag: timedelta | None = None) -> datetime:
    """Hours starting before this are closed: they ended at least `lag` ago."""
    return floor_hour(now - (ledger_lag() if lag is None else lag))


# --- what the events say, what the ledger says ----------------------------------------------------


_EVENT_SUMS = {
    "requests": Count("id"),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost": Sum("cost"),
}
_ENTRY_SUMS = {
    "requests": Sum("requests"),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost": Sum("amount"),
}


def _usage(row: dict) -> Usage:
    return Usage(
        row["requests"] or 0,
        row["prompt_tokens"] or 0,
        row["completion_tokens"] or 0,
        row["cost"] or 0,
    )


def _event_usage(*, hour: datetime, org_ids: list[UUID]) -> dict[UUID, Usage]:
    rows = (
        UsageEvent.objects.filter(
            org_id__in=org_ids, created_at__gte=hour, created_at__lt=hour + HOUR
        )
        .values("org_id")
        .annotate(**_EVENT_SUMS)
        .order_by()
    )
    return {row["org_id"]: _usage(row) for row in rows}


def _booked_usage(*, hour: datetime, org_ids: list[UUID]) -> dict[UUID, tuple[Usage, int]]:
    rows = (
        LedgerEntry.objects.filter(org_id__in=org_ids, usage_hour=hour)
        .values("org_id")
        .annotate(entries=Count("id"), **_ENTRY_SUMS)
        .order_by()
    )
    return {row["org_id"]: (_usage(row), row["entries"]) for row in rows}


def _postings(*, hour: datetime, org_ids: list[UUID]) -> list[Posting]:
    truth = _event_usage(hour=hour, org_ids=org_ids)
    booked = _booked_usage(hour=hour, org_ids=org_ids)
    postings = []
    for org_id in org_ids:
        events = truth.get(org_id, Usage())
        ledger, entries = booked.get(org_id, (Usage(), 0))
        delta = events - ledger
        if entries == 0 and events:
            key = f"usage:{org_id}:{iso(hour)}"
            postings.append(Posting(org_id, hour, LedgerEntry.Kind.USAGE, key, delta))
        elif entries and delta:
            key = f"usage-adjustment:{org_id}:{iso(hour)}:{entries}"
            postings.append(Posting(org_id, hour, LedgerEntry.Kind.ADJUSTMENT, key, delta))
    return postings


# --- booking --------------------------------------------------------------------------------------


def lock_periods(ids: Iterable[int]) -> dict[int, BillingPeriod]:
    return {
        p.pk: p
        for p in BillingPeriod.objects.select_for_update().filter(pk__in=set(ids)).order_by("pk")
    }


class _Periods:
    """The billing periods one posting run books into, looked up (or opened) once per org.

    Statuses may go stale here; `_book` re-reads them under the row lock.
    """

    def __init__(self, *, now: datetime):
        self.now = now
        self.seen: dict[UUID, list[BillingPeriod]] = defaultdict(list)

    def holding(self, org_id: UUID, at: datetime) -> BillingPeriod:
        for period in self.seen[org_id]:
            if period.start <= at < period.end:
                return period
        period = billing_period_for(org_id=org_id, at=at, now=self.now)
        self.seen[org_id].append(period)
        return period


_ENTRY_COLUMNS = (
    "org",
    "billing_period",
    "kind",
    "amount",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "usage_hour",
    "idempotency_key",
    "source",
    "memo",
    "created_at",
)


def _insert_entries(rows: list[tuple]) -> set[str]:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING; returns the keys this call inserted."""
    fields = [LedgerEntry._meta.get_field(name) for name in _ENTRY_COLUMNS]
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        f.get_db_prep_save(v, connection) for row in rows for f, v in zip(fields, row, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO billing_ledger ({', '.join(f.column for f in fields)}) "
            f"VALUES {', '.join([row_sql] * len(rows))} "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            params,
        )
        return {key for (key,) in cursor.fetchall()}


def _book(
    postings: list[Posting], *, now: datetime, memo: str, periods: _Periods, summary: PostingSummary
) -> None:
    """Insert the postings' entries, each into the open period holding its hour, else the one holding now.

    A posting another worker made first (same idempotency key) is counted as a duplicate.
    """
    with transaction.atomic():
        target = {p: periods.holding(p.org_id, p.hour) for p in postings}
        # Lock every period involved, in one ordered statement: a close cannot slip in between.
        locked = lock_periods(period.pk for period in target.values())
        rows = []
        for posting in postings:
            period = locked[target[posting].pk]
            if period.status == BillingPeriod.Status.CLOSED:
                # A very late event: book it now, in the period holding `now`.
                current = periods.holding(posting.org_id, now)
                period = locked.get(current.pk) or lock_periods([current.pk])[current.pk]
            delta = posting.delta
            rows.append(
                (
                    posting.org_id,
                    period.pk,
                    posting.kind,
                    require_int(delta.cost, "amount"),
                    require_int(delta.requests, "requests"),
                    require_int(delta.prompt_tokens, "prompt_tokens"),
                    require_int(delta.completion_tokens, "completion_tokens"),
                    posting.hour,
                    posting.idempotency_key,
                    f"usage_events:{posting.org_id}:{iso(posting.hour)}",
                    memo,
                    now,
                )
            )
        inserted = set()
        for i in range(0, len(rows), 200):
            inserted |= _insert_entries(rows[i : i + 200])
    for posting in postings:
        if posting.idempotency_key in inserted:
            summary.record(posting)
        else:
            summary.duplicates += 1


def ledger_post_hours(
    *,
    hours: dict[datetime, set[UUID]],
    now: datetime,
    memo: str = "",
    dry_run: bool = False,
    on_hour: Callable[[datetime], None] | None = None,
) -> PostingSummary:
    """Bring the ledger in line with the events for each (hour, org) given; one transaction per chunk of orgs."""
    summary = PostingSummary()
    periods = _Periods(now=now)
    for hour in sorted(hours):
        orgs = sorted(hours[hour], key=str)
        summary.hours += 1
        summary.org_hours += len(orgs)
        for i in range(0, len(orgs), _ORGS_PER_QUERY):
            postings = _postings(hour=hour, org_ids=orgs[i : i + _ORGS_PER_QUERY])
            if dry_run:
                for posting in postings:
                    summary.record(posting)
            elif postings:
                _book(postings, now=now, memo=memo, periods=periods, summary=summary)
        if on_hour is not None:
            on_hour(hour)
    return summary


def ledger_post_closed_hours(*, now: datetime, lag: timedelta | None = None) -> PostingSummary:
    """The scheduled posting: every newly closed hour, and every closed hour whose rollups changed since.

    Hour rollups say which (org, hour) pairs to look at; the events themselves say how much.
    """
    until = closed_before(now=now, lag=lag)
    cursor = cursor_read(name=LEDGER_CURSOR)
    candidates = UsageRollup.objects.filter(
        granularity=UsageRollup.Granularity.HOUR, bucket_start__lt=until
    )
    if cursor.position is not None:
        recheck = Q(bucket_start__gte=cursor.position)
        if cursor.last_run_at is not None:
            recheck |= Q(updated_at__gte=cursor.last_run_at - RECHECK_MARGIN)
        candidates = candidates.filter(recheck)
    hours: dict[datetime, set[UUID]] = defaultdict(set)
    for org_id, hour in candidates.values_list("org_id", "bucket_start").distinct():
        hours[hour].add(org_id)
    summary = ledger_post_hours(hours=hours, now=now, memo="scheduled posting")
    cursor_advance(name=LEDGER_CURSOR, position=until, ran_at=now)
    return summary


def ledger_post_range(
    *,
    org_id: UUID | None,
    start: datetime,
    end: datetime,
    now: datetime,
    lag: timedelta | None = None,
    memo: str = "",
    dry_run: bool = False,
    on_hour: Callable[[datetime], None] | None = None,
) -> PostingSummary:
    """Recompute every closed hour in [start, end) from the events, for one org or all.

    Looks at every hour with events or with usage entries (so a difference either way
    shows), and posts the differences as adjustments.
    """
    end = min(end, closed_before(now=now, lag=lag))
    hours: dict[datetime, set[UUID]] = defaultdict(set)
    if start >= end:
        return PostingSummary()
    events = UsageEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    entries = LedgerEntry.objects.filter(usage_hour__gte=start, usage_hour__lt=end)
    if org_id is not None:
        events, entries = events.filter(org_id=org_id), entries.filter(org_id=org_id)
    for org, hour in (
        events.annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values_list("org_id", "hour")
        .distinct()
        .order_by()
    ):
        hours[hour].add(org)
    for org, hour in entries.values_list("org_id", "usage_hour").distinct().order_by():
        hours[hour].add(org)
    return ledger_post_hours(hours=hours, now=now, memo=memo, dry_run=dry_run, on_hour=on_hour)
