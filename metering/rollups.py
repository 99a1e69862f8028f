"""Usage rollups: hour and day buckets per (org, key, model), counted exactly once.

The watermark is per event, not a single id or time: an event is pending until the
transaction that adds it to its buckets also sets its `rolled_up_at`. A request that
started earlier but committed later is simply still pending on the next run, two
workers claim disjoint batches (`FOR UPDATE SKIP LOCKED`), and a crash anywhere in a
batch rolls back the counting and the marking together.

The invariant every path keeps: a bucket equals the sum of its counted events. The
backfill that recomputes buckets from the events is metering/backfill.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from uuid import UUID

from django.db import connection, transaction

from metering.buckets import floor_hour
from metering.locks import rollup_lock_shared
from metering.models import NO_KEY, UsageEvent, UsageRollup

HOUR_ = UsageRollup.Granularity.HOUR.value
DAY_ = UsageRollup.Granularity.DAY.value

# (org_id, api_key_id, model_name, granularity, bucket_start)
BucketKey = tuple[UUID, UUID, str, str, datetime]
# [requests, prompt_tokens, completion_tokens, cost]
Counts = list[int]

_KEY_COLUMNS = ("org_id", "api_key_id", "model_name", "granularity", "bucket_start")
_COUNT_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "cost")
_ROWS_PER_STATEMENT = 400  # 10 parameters a row stays far below SQLite's and Postgres' limits


@dataclass
class RollupSummary:
    events: int = 0
    batches: int = 0
    buckets: int = 0


# --- writing buckets ---------------------------------------------------------------------


@cache
def _fields() -> tuple:
    meta = UsageRollup._meta
    columns = (*_KEY_COLUMNS, *_COUNT_COLUMNS, "updated_at")
    return tuple(meta.get_field("org" if c == "org_id" else c) for c in columns)


def upsert_buckets(
    buckets: dict[BucketKey, Counts], *, now: datetime, replace: bool = False
) -> None:
    """Add (or with `replace`, set) `buckets` in usage_rollups with INSERT … ON CONFLICT DO UPDATE.

    Rows go in a fixed order, so concurrent batches lock the buckets they share in the
    same order. Postgres gets one short statement over arrays (parsed once, cached);
    other databases a multi-row VALUES list (SQLite ≥ 3.24 has the same upsert).
    """
    if not buckets:
        return
    if replace:
        sets = ", ".join(f"{c} = excluded.{c}" for c in _COUNT_COLUMNS)
    else:
        sets = ", ".join(f"{c} = usage_rollups.{c} + excluded.{c}" for c in _COUNT_COLUMNS)
    conflict = f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {sets}, updated_at = excluded.updated_at"
    rows = sorted(buckets.items(), key=_lock_order)
    if connection.vendor == "postgresql":
        _upsert_arrays(rows, now=now, conflict=conflict)
    else:
        _upsert_values(rows, now=now, conflict=conflict)


_PG_TYPES = (
    "uuid",
    "uuid",
    "varchar",
    "varchar",
    "timestamptz",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
)


def _upsert_arrays(rows: list, *, now: datetime, conflict: str) -> None:
    columns = (*_KEY_COLUMNS, *_COUNT_COLUMNS)
    arrays: list[list] = [[] for _ in columns]
    for key, counts in rows:
        for array, value in zip(arrays, (*key, *counts), strict=True):
            array.append(value)
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    unnest = ", ".join(f"%s::{t}[]" for t in _PG_TYPES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO usage_rollups ({', '.join(columns)}, updated_at) "
            f"SELECT {names}, %s FROM unnest({unnest}) AS t({names}) {conflict}",
            [now, *arrays],
        )


def _upsert_values(rows: list, *, now: datetime, conflict: str) -> None:
    fields = _fields()
    columns = (*_KEY_COLUMNS, *_COUNT_COLUMNS, "updated_at")
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        for i in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[i : i + _ROWS_PER_STATEMENT]
            params: list = []
            for key, counts in chunk:
                values = (*key, *counts, now)
                params.extend(
                    f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)
                )
            cursor.execute(
                f"INSERT INTO usage_rollups ({', '.join(columns)}) "
                f"VALUES {', '.join([row_sql] * len(chunk))} {conflict}",
                params,
            )


def _lock_order(item: tuple[BucketKey, Counts]) -> tuple:
    org_id, key_id, model, granularity, start = item[0]
    return (str(org_id), granularity, start, str(key_id), model)


def add_counts(
    acc: dict[BucketKey, Counts],
    key: BucketKey,
    requests: int,
    prompt: int,
    completion: int,
    cost: int,
):
    counts = acc.get(key)
    if counts is None:
        acc[key] = [requests, prompt, completion, cost]
    else:
        counts[0] += requests
        counts[1] += prompt
        counts[2] += completion
        counts[3] += cost


def aggregate_events(rows: Iterable[tuple]) -> dict[BucketKey, Counts]:
    """Hour and day buckets of (org_id, api_key_id, model_name, prompt, completion, cost, created_at) rows."""
    acc: dict[BucketKey, Counts] = {}
    for org_id, key_id, model, prompt, completion, cost, at in rows:
        hour = floor_hour(at)
        key_id = key_id or NO_KEY
        add_counts(acc, (org_id, key_id, model, HOUR_, hour), 1, prompt, completion, cost)
        add_counts(
            acc, (org_id, key_id, model, DAY_, hour.replace(hour=0)), 1, prompt, completion, cost
        )
    return acc


# --- incremental ---------------------------------------------------------------------------


_CLAIMED = (
    "id",
    "org_id",
    "api_key_id",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "created_at",
)


def _claim(*, batch_size: int) -> list[tuple]:
    return list(
        UsageEvent.objects.select_for_update(skip_locked=True)
        .filter(rolled_up_at__isnull=True)
        .order_by("id")
        .values_list(*_CLAIMED)[:batch_size]
    )


def _mark_rolled_up(*, ids: list[int], now: datetime) -> None:
    if connection.vendor == "postgresql":  # one array parameter instead of thousands
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE usage_events SET rolled_up_at = %s WHERE id = ANY(%s)", [now, ids]
            )
    else:
        UsageEvent.objects.filter(id__in=ids).update(rolled_up_at=now)


def usage_rollup_batch(*, now: datetime, batch_size: int) -> tuple[int, int]:
    """Count one batch of pending events into their buckets and mark them, atomically.

    Returns (events counted, buckets touched).
    """
    with transaction.atomic():
        rollup_lock_shared()
        claimed = _claim(batch_size=batch_size)
        if not claimed:
            return 0, 0
        buckets = aggregate_events(row[1:] for row in claimed)
        upsert_buckets(buckets, now=now)
        _mark_rolled_up(ids=[row[0] for row in claimed], now=now)
        return len(claimed), len(buckets)


def usage_rollup_pending(
    *, now: datetime, batch_size: int = 5000, max_batches: int | None = None
) -> RollupSummary:
    """Roll up pending events batch by batch until none is left (or `max_batches` ran).

    Each batch is stamped `now` plus the time the run has taken so far, so `updated_at`
    says when a bucket really changed even late in a long run: the ledger's re-check of
    posted hours relies on it.
    """
    summary = RollupSummary()
    started = time.monotonic()
    while max_batches is None or summary.batches < max_batches:
        stamp = now + timedelta(seconds=time.monotonic() - started) if summary.batches else now
        events, buckets = usage_rollup_batch(now=stamp, batch_size=batch_size)
        if events == 0:
            break
        summary.events += events
        summary.batches += 1
        summary.buckets += buckets
        if events < batch_size:
            break
    return summary
