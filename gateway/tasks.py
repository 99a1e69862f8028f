"""Celery tasks: thin wrappers around the gateway's upkeep (gateway/leases.py)."""

from __future__ import annotations

import time

from celery import shared_task

from gateway import leases


@shared_task(name="gateway.reap_requests", ignore_result=True)
def reap_requests() -> int:
    """Settle and bill the requests whose processes died (their leases ran out)."""
    return leases.reap(now_ms=int(time.time() * 1000))
