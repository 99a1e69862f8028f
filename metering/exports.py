"""CSV exports for finance: usage (a row per bucket, model and key) and request logs.

Both are generators for a StreamingHttpResponse: rows are read a chunk at a time (a day
of usage, a thousand request logs) and written as they come, so an export of a year of
usage or of every retained request log never sits in memory. Money is integer micro-USD (`cost_micro_usd`; `cost_usd` repeats it
as an exact decimal string). Cells a spreadsheet would run as a formula (text starting
with = + - @, a tab or a carriage return: a key named `=HYPERLINK(...)`) get a leading
apostrophe; numbers are written as numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from django.db.models import Q, QuerySet, Sum

from accounts.models import Organization
from apikeys.models import ApiKey
from metering.buckets import DAY, floor_day, steps
from metering.models import NO_KEY, RequestLog
from metering.pricing import usd
from metering.selectors import bucket_of, usage_rollups
from metering.serializers import RequestLogSerializer

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 1000

USAGE_COLUMNS = [
    "bucket_start",
    "bucket",
    "model",
    "key_id",
    "key_name",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_micro_usd",
    "cost_usd",
]
# The fields of a row of GET /requests, in its order.
REQUEST_COLUMNS = list(RequestLogSerializer.Meta.fields)


def safe_cell(value: object) -> object:
    """Text a spreadsheet would evaluate is prefixed with an apostrophe; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _when(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Echo:
    """csv.writer's file: hands each written line back instead of storing it."""

    def write(self, line: str) -> str:
        return line


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """The header, then the rows, as CSV text, in pieces of up to CHUNK rows."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    batch: list[str] = []
    for row in rows:
        batch.append(writer.writerow([safe_cell(value) for value in row]))
        if len(batch) >= CHUNK:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def usage_rows(
    *, org: Organization, start: datetime, end: datetime, group_by: str
) -> Iterator[list]:
    """Usage in [start, end) per (bucket, model, key), from the rollups `/usage` reads.

    `group_by` (day or hour) is the bucket; sums of the rows equal `/usage`'s totals for
    the same parameters. Read one UTC day at a time: each query is small, and no cursor
    stays open while the client reads (a server-side cursor would not survive a
    transaction-mode pooler such as Supabase's port 6543).
    """
    granularity, rollups = usage_rollups(org=org, start=start, end=end, group_by=group_by)
    bucket = "hour" if group_by == "hour" else "day"
    grouped = (
        rollups.annotate(group=bucket_of(granularity=granularity, group_by=group_by))
        .values("group", "model_name", "api_key_id")
        .annotate(
            requests=Sum("requests"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("group", "model_name", "api_key_id")
    )
    names = dict(ApiKey.objects.filter(org=org).values_list("id", "name"))
    for day in steps(floor_day(start), end, DAY):
        lo, hi = max(day, start), min(day + DAY, end)
        for row in grouped.filter(bucket_start__gte=lo, bucket_start__lt=hi):
            key_id = row["api_key_id"]
            yield [
                _when(row["group"]),
                bucket,
                row["model_name"],
                "" if key_id == NO_KEY else str(key_id),
                names.get(key_id, ""),
                row["requests"],
                row["prompt_tokens"],
                row["completion_tokens"],
                row["prompt_tokens"] + row["completion_tokens"],
                row["cost"],
                usd(row["cost"]),
            ]


def request_rows(logs: QuerySet[RequestLog]) -> Iterator[list]:
    """The request logs of `logs` (ordered newest first), read CHUNK at a time by keyset.

    Each chunk is its own short query after the last row sent ((created_at, id) below it,
    on the (org, created_at) index): no cursor or transaction stays open while a slow
    client reads, and rows arriving meanwhile (newer) are not picked up halfway.
    """
    logs = logs.order_by("-created_at", "-id")
    after: tuple[datetime, int] | None = None
    while True:
        page = logs
        if after is not None:
            at, pk = after
            page = logs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
        chunk = list(page[:CHUNK])
        for log in chunk:
            yield [
                log.request_id,
                _when(log.created_at),
                log.endpoint,
                log.model_name,
                "" if log.api_key_id is None else str(log.api_key_id),
                log.status_code,
                log.error_code,
                log.latency_ms,
                "" if log.ttfb_ms is None else log.ttfb_ms,
                "true" if log.streamed else "false",
                log.prompt_tokens,
                log.completion_tokens,
            ]
        if len(chunk) < CHUNK:
            return
        after = (chunk[-1].created_at, chunk[-1].pk)
