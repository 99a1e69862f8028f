"""Time buckets in UTC: hours and days as [start, start + length)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def floor_day(at: datetime) -> datetime:
    return floor_hour(at).replace(hour=0)


def is_midnight(at: datetime) -> bool:
    return floor_day(at) == at


def steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    """start, start + step, … while < end."""
    at = start
    while at < end:
        yield at
        at += step


def iso(at: datetime) -> str:
    """A compact, sortable UTC label for idempotency keys: 2026-03-02T10:00Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
