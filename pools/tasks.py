"""Celery tasks of the pools app (thin wrappers around services)."""

from celery import shared_task
from django.utils import timezone

from pools.health import routers_probe


@shared_task(name="pools.probe_routers", ignore_result=True)
def probe_routers(**kwargs) -> int:
    """Beat: probe every enabled router, record its health and feed its breaker. Returns how many are up."""
    return sum(result.ok for result in routers_probe(now=timezone.now()))
