"""Celery tasks of the pools app (thin wrappers around services)."""

from celery import shared_task
from django.utils import timezone

from pools.health import routers_probe, routers_probe_recovering


@shared_task(name="pools.probe_routers", ignore_result=True)
def probe_routers(**kwargs) -> int:
    """Beat: probe every enabled router, record its health and feed its breaker. Returns how many are up."""
    return sum(result.ok for result in routers_probe(now=timezone.now()))


@shared_task(name="pools.probe_recovering_routers", ignore_result=True)
def probe_recovering_routers(**kwargs) -> int:
    """Beat: probe the routers whose breaker is open or that are marked slow, so one that is
    back takes requests at once. Returns how many of them are up."""
    return sum(result.ok for result in routers_probe_recovering(now=timezone.now()))
