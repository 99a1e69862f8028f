"""Celery tasks: thin, explicitly named wrappers around one metering service each.

Keyword arguments only, `now` taken here at the edge. Retried with exponential
backoff on database and fast-state outages; safe to run twice or side by side,
because every service they call is idempotent in the data.
"""

from __future__ import annotations

import redis.exceptions
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from metering import services

RETRY = {
    "bind": True,
    "autoretry_for": (
        OperationalError,
        InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
}


@shared_task(name="metering.rollup_usage", **RETRY)
def rollup_usage(
    self, *, batch_size: int | None = None, max_batches: int | None = None, **kwargs
) -> dict:
    summary = services.usage_rollup_pending(
        now=timezone.now(),
        batch_size=batch_size or settings.METERING_ROLLUP_BATCH_SIZE,
        max_batches=max_batches or settings.METERING_ROLLUP_MAX_BATCHES,
    )
    return {"events": summary.events, "batches": summary.batches}


@shared_task(name="metering.post_ledger", **RETRY)
def post_ledger(self, **kwargs) -> dict:
    summary = services.ledger_post_closed_hours(now=timezone.now())
    return {
        "usage_entries": summary.usage_entries,
        "adjustments": summary.adjustments,
        "amount": summary.amount,
    }


@shared_task(name="metering.close_billing_periods", **RETRY)
def close_billing_periods(self, **kwargs) -> dict:
    summary = services.billing_periods_close_due(now=timezone.now())
    return {
        "closed": summary.periods_closed,
        "subscriptions_advanced": summary.subscriptions_advanced,
    }


@shared_task(name="metering.touch_keys_last_used", **RETRY)
def touch_keys_last_used(self, **kwargs) -> dict:
    return {"touched": services.keys_last_used_refresh(now=timezone.now())}


@shared_task(name="metering.prune_request_logs", **RETRY)
def prune_request_logs(self, *, retention_days: int | None = None, **kwargs) -> dict:
    return {
        "deleted": services.request_logs_prune(now=timezone.now(), retention_days=retention_days)
    }


@shared_task(name="metering.reconcile_quotas", **RETRY)
def reconcile_quotas(self, *, org_ids: list[str] | None = None, **kwargs) -> dict:
    summary = services.quota_reconcile(now=timezone.now(), org_ids=org_ids)
    return {"orgs": summary.orgs, "changed": summary.changed}


@shared_task(name="metering.replay_usage_spool", **RETRY)
def replay_usage_spool(self, *, limit: int | None = None, **kwargs) -> dict:
    """Usage records this host's processes spooled while Postgres was unavailable, written now."""
    return {"replayed": services.usage_spool_replay(limit=limit)}
