"""Metering's public API: the gateway's durable usage write, and the services tasks and commands call.

The rules live in modules named for their concern; this module is where other code
finds them:

- `request_record` — the gateway writes a request log and its usage event (here); when
  Postgres cannot take it in time, the usage spool keeps it (`metering.spool`)
- `usage_spool_replay`, `usage_spool_pending` — the spool written into Postgres, and its size
- `usage_rollup_pending`, `usage_rollup_rebuild` — hour and day rollups (`metering.rollups`, `metering.backfill`)
- `ledger_post_closed_hours`, `ledger_post_range`, `ledger_post_manual` — the billing ledger (`metering.ledger`; credits in `metering.adjustments`)
- `billing_periods_close_due`, `billing_period_close` — billing periods (`metering.closing`)
- `keys_last_used_refresh`, `request_logs_prune` — request-log upkeep (`metering.request_logs`)
- `quota_reconcile`, `quota_seed` — allowance counters in fast state (`metering.quotas`)
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from time import monotonic

import psycopg
from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)

from infra.pgpool.base import run_pooled
from metering import groupcommit, spool
from metering.adjustments import ledger_post_manual
from metering.backfill import usage_rollup_rebuild
from metering.closing import billing_period_close, billing_periods_close_due
from metering.ledger import ledger_post_closed_hours, ledger_post_range
from metering.models import RequestLog, UsageEvent
from metering.pricing import price_micro_usd
from metering.quotas import quota_reconcile, quota_seed
from metering.request_logs import keys_last_used_refresh, request_logs_prune
from metering.rollups import usage_rollup_pending
from metering.spool import pending as usage_spool_pending
from metering.spool import replay as usage_spool_replay

logger = logging.getLogger(__name__)

__all__ = [
    "RequestRecord",
    "billing_period_close",
    "billing_periods_close_due",
    "keys_last_used_refresh",
    "ledger_post_closed_hours",
    "ledger_post_manual",
    "ledger_post_range",
    "quota_reconcile",
    "quota_seed",
    "request_logs_prune",
    "request_record",
    "request_records_write",
    "usage_rollup_pending",
    "usage_rollup_rebuild",
    "usage_spool_pending",
    "usage_spool_replay",
]


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    status_code: int
    latency_ms: int
    created_at: datetime
    org_id: str | None = None
    api_key_id: str | None = None
    model_name: str = ""
    route_id: int | None = None
    router_id: int | None = None
    error_code: str = ""
    ttfb_ms: int | None = None
    streamed: bool = False
    client_ip: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    unbilled_tokens: int = 0
    usage_capped: bool = False  # the router's usage claim was cut down (gateway/tokens.py)
    input_per_mtok: int = 0
    output_per_mtok: int = 0


_LOG_FIELDS = (
    "request_id",
    "org",
    "api_key",
    "endpoint",
    "model_name",
    "route_id",
    "router_id",
    "status_code",
    "error_code",
    "latency_ms",
    "ttfb_ms",
    "streamed",
    "client_ip",
    "prompt_tokens",
    "completion_tokens",
    "unbilled_tokens",
    "usage_capped",
    "created_at",
)
# Usage-event columns copied from the request-log row just inserted, then the event's own.
_EVENT_FROM_LOG = (
    "request_id",
    "org",
    "api_key",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "usage_capped",
    "created_at",
)
_EVENT_OWN = ("estimated", "cost")


@cache
def _statements(quote) -> tuple[str, str]:
    """(log only, log + usage event): each one statement, so one round trip and atomic by itself.

    `ON CONFLICT (request_id) DO NOTHING` keeps a repeated write a no-op; the event is
    inserted only from the log row this statement inserted.
    """
    log_table, event_table = quote(RequestLog._meta.db_table), quote(UsageEvent._meta.db_table)
    log_cols = [quote(RequestLog._meta.get_field(name).column) for name in _LOG_FIELDS]
    insert_log = (
        f"INSERT INTO {log_table} ({', '.join(log_cols)}) VALUES ({', '.join(['%s'] * len(log_cols))}) "
        f"ON CONFLICT ({quote(RequestLog._meta.get_field('request_id').column)}) DO NOTHING"
    )
    copied = [quote(RequestLog._meta.get_field(name).column) for name in _EVENT_FROM_LOG]
    event_cols = [
        quote(UsageEvent._meta.get_field(name).column) for name in (*_EVENT_FROM_LOG, *_EVENT_OWN)
    ]
    with_event = (
        f"WITH log AS ({insert_log} RETURNING {', '.join(copied)}) "
        f"INSERT INTO {event_table} ({', '.join(event_cols)}) "
        f"SELECT {', '.join(copied)}, %s, %s FROM log"
    )
    return insert_log, with_event


# Until then (monotonic seconds), records go straight to the spool: Postgres just failed.
_held_until = 0.0

# Errors saying Postgres cannot take a write now, not that the write is wrong: down,
# unreachable, restarting, out of connections, disk or memory, a pool or deadline timeout
# (Django's wrapped errors, and psycopg's own, as psycopg_pool raises them).
_UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
# read_only_sql_transaction: a failover onto a replica, or Supabase when its disk fills up.
_READ_ONLY = "25006"


def request_record(*, record: RequestRecord) -> None:
    """Write the request log and, when tokens were served, its usage event, in one transaction.

    Idempotent on the request id: writing the same request twice changes nothing.

    The end of every gateway request, after the client got its answer: it waits at most
    USAGE_WRITE_TIMEOUT_SECONDS for Postgres (pool wait and statement), and never raises
    because Postgres cannot take the write. The record then goes to the usage spool
    (`metering.spool`), which writes it later, once; for USAGE_WRITE_BACKOFF_SECONDS after
    such a failure the next records go straight there. Any other error (a record or a
    statement Postgres refuses: a bug) is raised.
    """
    global _held_until
    if _held_until and monotonic() < _held_until:
        _spool(record)
        return
    try:
        _write_grouped(record, timeout=settings.USAGE_WRITE_TIMEOUT_SECONDS)
    except Exception as error:
        if not write_unavailable(error):
            raise
        writes_hold(error)
        _spool(record)
        return
    if _held_until:
        _held_until = 0.0
        logger.warning("usage writes reach Postgres again")
    if spool.writing():
        spool.seal()  # Postgres is back: any process may replay this process's file now


def write_unavailable(error: BaseException) -> bool:
    """True when `error` says Postgres cannot take the write now (it would succeed later)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    return getattr(error.__cause__, "sqlstate", None) == _READ_ONLY


def writes_hold(error: BaseException) -> None:
    """Send records straight to the spool for USAGE_WRITE_BACKOFF_SECONDS: Postgres failed."""
    global _held_until
    if not _held_until:  # once an outage, not once a record
        logger.warning(
            "Postgres cannot take usage writes (%s: %s): spooling them in %s",
            type(error).__name__,
            error,
            spool.directory(),
        )
    _held_until = monotonic() + settings.USAGE_WRITE_BACKOFF_SECONDS


def writes_held() -> bool:
    return bool(_held_until) and monotonic() < _held_until


def _spool(record: RequestRecord) -> None:
    try:
        spool.append(record)
    except Exception:
        # Postgres and the local disk both failed: the log line is the last copy.
        logger.critical(
            "usage record lost: Postgres unavailable and the spool failed: %s",
            spool.encode(record).decode().strip(),
            exc_info=True,
        )
        raise


def _served(record: RequestRecord) -> bool:
    return record.prompt_tokens + record.completion_tokens > 0 and record.org_id is not None


def _write_grouped(record: RequestRecord, *, timeout: float | None) -> None:
    """`_write`, in a group commit (metering/groupcommit.py) on the gevent server with
    pooled Postgres connections; alone otherwise."""
    connection = connections[router.db_for_write(RequestLog)]
    committer = groupcommit.for_process(_write_batch, write_unavailable)
    if (
        committer is None
        or getattr(connection, "pool", None) is None
        or connection.in_atomic_block
        or connection.connection is not None
    ):
        _write(record, timeout=timeout)
        return
    try:
        committer.write(record, timeout)
    except groupcommit.WriteAlone:
        _write(record, timeout=timeout)


def _write_batch(records: list[RequestRecord], timeout: float | None) -> None:
    if len(records) == 1:  # its prepared statement, as without group commit
        _write(records[0], timeout=timeout)
    else:
        request_records_write(records=records, timeout=timeout)


def _write(record: RequestRecord, *, timeout: float | None) -> None:
    served = _served(record)
    connection = connections[router.db_for_write(RequestLog)]
    try:
        if connection.vendor == "postgresql":
            _write_postgres(connection, record, served, timeout=timeout)
        else:
            _write_orm(record, served)
    except IntegrityError:
        if not RequestLog.objects.filter(request_id=record.request_id).exists():
            raise


def _params(record: RequestRecord, served: bool) -> list:
    params = [
        record.request_id,
        record.org_id,
        record.api_key_id,
        record.endpoint,
        record.model_name,
        record.route_id,
        record.router_id,
        record.status_code,
        record.error_code,
        record.latency_ms,
        record.ttfb_ms,
        record.streamed,
        record.client_ip or None,
        record.prompt_tokens,
        record.completion_tokens,
        record.unbilled_tokens,
        record.usage_capped,
        record.created_at,
    ]
    if served:
        params += [record.estimated, _cost(record)]
    return params


def _write_postgres(connection, record: RequestRecord, served: bool, *, timeout=None) -> None:
    insert_log, with_event = _statements(connection.ops.quote_name)
    params = _params(record, served)
    sql = with_event if served else insert_log
    # On the pooled (gevent) server the statement runs on a pooled connection of its own,
    # prepared once per connection (infra/pgpool), within `timeout`; it commits by itself.
    if run_pooled(
        connection, sql, params, prepare=settings.DB_PREPARED_STATEMENTS, timeout=timeout
    ):
        return
    # Outside a transaction the one statement is its own; inside one (a caller's atomic
    # block), a savepoint keeps a conflict from breaking the caller's transaction.
    with (
        transaction.atomic(using=connection.alias) if connection.in_atomic_block else nullcontext(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)


def request_records_write(*, records: list[RequestRecord], timeout: float | None = None) -> None:
    """Write many records as `request_record` writes one (the spool's replay), idempotently:
    records already in Postgres change nothing. Raises what Postgres raises, unavailability
    included; on Postgres, a batch is one pipeline of statements within `timeout`."""
    connection = connections[router.db_for_write(RequestLog)]
    if connection.vendor != "postgresql":
        for record in records:
            _write(record, timeout=timeout)
        return
    insert_log, with_event = _statements(connection.ops.quote_name)
    batches: dict[str, list[list]] = {with_event: [], insert_log: []}
    for record in records:
        served = _served(record)
        batches[with_event if served else insert_log].append(_params(record, served))
    for sql, rows in batches.items():
        if not rows or run_pooled(connection, sql, rows, many=True, timeout=timeout):
            continue
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def _write_orm(record: RequestRecord, served: bool) -> None:
    with transaction.atomic():
        RequestLog.objects.create(
            request_id=record.request_id,
            org_id=record.org_id,
            api_key_id=record.api_key_id,
            endpoint=record.endpoint,
            model_name=record.model_name,
            route_id=record.route_id,
            router_id=record.router_id,
            status_code=record.status_code,
            error_code=record.error_code,
            latency_ms=record.latency_ms,
            ttfb_ms=record.ttfb_ms,
            streamed=record.streamed,
            client_ip=record.client_ip,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            unbilled_tokens=record.unbilled_tokens,
            usage_capped=record.usage_capped,
            created_at=record.created_at,
        )
        if served:
            UsageEvent.objects.create(
                request_id=record.request_id,
                org_id=record.org_id,
                api_key_id=record.api_key_id,
                model_name=record.model_name,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                estimated=record.estimated,
                usage_capped=record.usage_capped,
                cost=_cost(record),
                created_at=record.created_at,
            )


def _cost(record: RequestRecord) -> int:
    return price_micro_usd(
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        input_per_mtok=record.input_per_mtok,
        output_per_mtok=record.output_per_mtok,
    )
