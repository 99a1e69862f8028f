"""Rollup backfill: recompute hour and day buckets from the usage events, day by day.

Replaces, never adds: each day is one short transaction under the exclusive rollup lock
(metering/rollups.py's incremental batches take it shared), so a bucket again equals the
sum of its counted events; `dry_run` says what would change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay, TruncHour

from metering.buckets import DAY, floor_day, floor_hour, steps
from metering.locks import rollup_lock_exclusive
from metering.models import NO_KEY, UsageEvent, UsageRollup
from metering.rollups import DAY_, HOUR_, BucketKey, Counts, add_counts, upsert_buckets


@dataclass
class BackfillSummary:
    days: int = 0
    events_marked: int = 0
    buckets_created: int = 0
    buckets_changed: int = 0
    buckets_removed: int = 0
    buckets_unchanged: int = 0
    changes: list[tuple[BucketKey, Counts | None, Counts | None]] = field(default_factory=list)

    def add(self, other: BackfillSummary, *, keep_changes: bool = True) -> None:
        self.days += other.days
        self.events_marked += other.events_marked
        self.buckets_created += other.buckets_created
        self.buckets_changed += other.buckets_changed
        self.buckets_removed += other.buckets_removed
        self.buckets_unchanged += other.buckets_unchanged
        if keep_changes:
            self.changes.extend(other.changes)


def _recount(*, start: datetime, end: datetime, org_id: UUID | None, granularity: str, which: str):
    """Buckets of `granularity` from the events in [start, end) that are `which`: counted, pending or all."""
    trunc = TruncHour if granularity == HOUR_ else TruncDay
    events = UsageEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    if org_id is not None:
        events = events.filter(org_id=org_id)
    if which != "all":
        events = events.filter(rolled_up_at__isnull=(which == "pending"))
    rows = (
        events.annotate(bucket=trunc("created_at", tzinfo=UTC))
        .values("org_id", "api_key_id", "model_name", "bucket")
        .annotate(
            n=Count("id"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost")
        )
        .order_by()
    )
    acc: dict[BucketKey, Counts] = {}
    for r in rows:
        key = (r["org_id"], r["api_key_id"] or NO_KEY, r["model_name"], granularity, r["bucket"])
        add_counts(acc, key, r["n"], r["p"], r["c"], r["cost"])
    return acc


def _stored(
    *, start: datetime, end: datetime, org_id: UUID | None, granularity: str
) -> dict[BucketKey, Counts]:
    rows = UsageRollup.objects.filter(
        granularity=granularity, bucket_start__gte=start, bucket_start__lt=end
    )
    if org_id is not None:
        rows = rows.filter(org_id=org_id)
    return {
        (r.org_id, r.api_key_id, r.model_name, granularity, r.bucket_start): [
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost,
        ]
        for r in rows
    }


def _compare(truth: dict, stored: dict, summary: BackfillSummary) -> None:
    for key, counts in truth.items():
        before = stored.get(key)
        if before is None:
            summary.buckets_created += 1
            summary.changes.append((key, None, counts))
        elif before != counts:
            summary.buckets_changed += 1
            summary.changes.append((key, before, counts))
        else:
            summary.buckets_unchanged += 1
    for key, counts in stored.items():
        if key not in truth:
            summary.buckets_removed += 1
            summary.changes.append((key, counts, None))


def usage_rollup_rebuild_day(
    *,
    day: datetime,
    start: datetime,
    end: datetime,
    now: datetime,
    org_id: UUID | None = None,
    dry_run: bool = False,
) -> BackfillSummary:
    """Recompute the buckets of one UTC day: its hour buckets inside [start, end), and its day bucket.

    Replaces, never adds. Under the exclusive rollup lock no incremental batch is
    mid-way, so "counted" is a stable set: mark the hours' pending events counted, then
    set every bucket to the sum of the counted events. An event the gateway commits
    meanwhile stays pending, and the next incremental batch adds it on top.
    """
    summary = BackfillSummary(days=1)
    day_end = day + DAY
    lo, hi = max(start, day), min(end, day_end)
    with transaction.atomic():
        rollup_lock_exclusive()
        pending = UsageEvent.objects.filter(
            created_at__gte=lo, created_at__lt=hi, rolled_up_at__isnull=True
        )
        if org_id is not None:
            pending = pending.filter(org_id=org_id)
        if dry_run:
            # Nothing is marked: compare with what marking the hours' pending events would count.
            summary.events_marked = pending.count()
            truth = _recount(start=lo, end=hi, org_id=org_id, granularity=HOUR_, which="all")
            truth.update(
                _recount(start=day, end=day_end, org_id=org_id, granularity=DAY_, which="counted")
            )
            for key, counts in _recount(
                start=lo, end=hi, org_id=org_id, granularity=DAY_, which="pending"
            ).items():
                add_counts(truth, key, *counts)
        else:
            summary.events_marked = pending.update(rolled_up_at=now)
            truth = _recount(start=lo, end=hi, org_id=org_id, granularity=HOUR_, which="counted")
            truth.update(
                _recount(start=day, end=day_end, org_id=org_id, granularity=DAY_, which="counted")
            )
        stored = _stored(start=lo, end=hi, org_id=org_id, granularity=HOUR_)
        stored.update(_stored(start=day, end=day_end, org_id=org_id, granularity=DAY_))
        _compare(truth, stored, summary)
        if dry_run or not summary.changes:
            return summary
        upsert_buckets(
            {key: after for key, _, after in summary.changes if after is not None},
            now=now,
            replace=True,
        )
        for (org, key_id, model, granularity, bucket), _, after in summary.changes:
            if after is None:
                UsageRollup.objects.filter(
                    org_id=org,
                    api_key_id=key_id,
                    model_name=model,
                    granularity=granularity,
                    bucket_start=bucket,
                ).delete()
    return summary


def usage_rollup_rebuild(
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    org_id: UUID | None = None,
    dry_run: bool = False,
    on_day: Callable[[datetime], None] | None = None,
) -> BackfillSummary:
    """Backfill [start, end) (whole hours) day by day; each day is one short transaction."""
    start, end = floor_hour(start), floor_hour(end)
    summary = BackfillSummary()
    for day in steps(floor_day(start), end, DAY):
        summary.add(
            usage_rollup_rebuild_day(
                day=day, start=start, end=end, now=now, org_id=org_id, dry_run=dry_run
            ),
            keep_changes=dry_run,
        )
        if on_day is not None:
            on_day(day)
    return summary
