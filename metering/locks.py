"""The rollup lock: incremental rollups share it; a backfill takes it alone.

A Postgres advisory lock held to the end of the transaction. Incremental batches
take it shared, so any number run side by side (they claim disjoint events with
SKIP LOCKED); a backfill takes it exclusive, so while it recomputes buckets from
the counted events no batch is half-way through counting more. SQLite runs one
writing transaction at a time (IMMEDIATE mode), so there it is a no-op.
"""

from __future__ import annotations

from django.db import connection

# "meter" as an integer: any constant will do, as long as only this module uses it.
ROLLUP_LOCK_ID = 0x6D65746572


def _lock(function: str) -> None:
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError(
            "the rollup lock is transaction-scoped: take it inside transaction.atomic()"
        )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [ROLLUP_LOCK_ID])


def rollup_lock_shared() -> None:
    _lock("pg_advisory_xact_lock_shared")


def rollup_lock_exclusive() -> None:
    _lock("pg_advisory_xact_lock")
