"""Celery tasks: thin, explicitly named wrappers around one apikeys service each."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from apikeys import unkey_sync

logger = logging.getLogger(__name__)


@shared_task(name="apikeys.sync_unkey_keys", acks_late=True)
def sync_unkey_keys(**kwargs) -> dict:
    """`manage.py sync_unkey_keys --apply` on a schedule (KEY_PROVIDER=unkey): Unkey's ratelimits
    follow plan changes, and a change Unkey missed while it was down is made after all."""
    outcomes = unkey_sync.reconcile(now=timezone.now(), apply=True)
    for outcome in outcomes:
        if outcome.error:
            logger.warning(
                "sync_unkey_keys: %s FAILED: %s", outcome.change.describe(), outcome.error
            )
        elif outcome.change.kind == "missing":
            logger.warning("sync_unkey_keys: %s", outcome.change.describe())
        else:
            logger.info("sync_unkey_keys: %s", outcome.change.describe())
    return {
        "changed": sum(1 for o in outcomes if o.change.kind != "missing" and not o.error),
        "failed": sum(1 for o in outcomes if o.error),
        "missing": sum(1 for o in outcomes if o.change.kind == "missing"),
    }
