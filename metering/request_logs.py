"""Request-log upkeep: keys' `last_used_at` from recent requests, and pruning old logs."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max

from apikeys.services import api_keys_touch_last_used
from metering.cursors import cursor_advance, cursor_read
from metering.models import RequestLog

LAST_USED_CURSOR = "keys_last_used"


def keys_last_used_refresh(*, now: datetime, lookback: timedelta | None = None) -> int:
    """Move each key's `last_used_at` to its latest request since the previous run; returns keys touched.

    A log's time is when its request started, and it commits when the request ends:
    each run looks back `lookback` (longer than any request) before the previous run,
    so a slow request that commits late is still seen. Re-reading is harmless: the
    update only moves forward.
    """
    lookback = (
        timedelta(seconds=settings.METERING_LAST_USED_LOOKBACK_SECONDS)
        if lookback is None
        else lookback
    )
    cursor = cursor_read(name=LAST_USED_CURSOR)
    logs = RequestLog.objects.filter(api_key_id__isnull=False, created_at__lte=now)
    if cursor.position is not None:
        logs = logs.filter(created_at__gte=cursor.position - lookback)
    seen = dict(
        logs.values("api_key_id")
        .annotate(at=Max("created_at"))
        .order_by()
        .values_list("api_key_id", "at")
    )
    touched = api_keys_touch_last_used(seen=seen) if seen else 0
    cursor_advance(name=LAST_USED_CURSOR, position=now, ran_at=now)
    return touched


def request_logs_prune(
    *, now: datetime, retention_days: int | None = None, chunk: int = 10_000, max_chunks: int = 100
) -> int:
    """Delete request logs older than the retention, a chunk at a time; returns rows deleted.

    Usage events are billing records and are never pruned. Retention 0 keeps everything.
    """
    days = (
        settings.METERING_REQUEST_LOG_RETENTION_DAYS if retention_days is None else retention_days
    )
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    deleted = 0
    for _ in range(max_chunks):
        ids = list(
            RequestLog.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:chunk]
        )
        if not ids:
            break
        deleted += RequestLog.objects.filter(id__in=ids).delete()[0]
    return deleted
