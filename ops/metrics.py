"""`GET /metrics`: Prometheus exposition of the gateway counters (infra.metrics) plus
gauges read at scrape time from shared state, so they are right with any number of
processes: in-flight requests and breaker state per router (fast state), router health
(last probe: up, latency, slow), the global pause, and the usage rollup lag (Postgres).

Set METRICS_BEARER_TOKEN to require `Authorization: Bearer <token>` from the scraper.
Without a token it answers 401 with DEBUG off, unless METRICS_PUBLIC=true opens it.
"""

from __future__ import annotations

import hmac
import logging
import time

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from infra import faststate, metrics
from metering.models import UsageEvent
from ops.services import pause_key
from pools.health import routers_live
from pools.models import Router, RouterHealth

logger = logging.getLogger(__name__)


class SharedStateCollector:
    """Gauges of state every process shares; a failing source is skipped, never fatal."""

    def collect(self):
        now = time.time()
        for source in (self._routers, self._pause, self._rollup_lag):
            try:
                yield from source(now)
            except Exception:
                logger.warning("metrics source %s failed", source.__name__, exc_info=True)

    def _routers(self, now: float):
        routers = list(Router.objects.filter(enabled=True).select_related("pool").order_by("pk"))
        live = routers_live([r.pk for r in routers], now_ms=int(now * 1000))
        health = {h.router_id: h for h in RouterHealth.objects.filter(router__in=routers)}
        labels = ["router", "pool", "name"]
        inflight = GaugeMetricFamily(
            "portal_router_inflight_requests", "Requests in flight on the router.", labels=labels
        )
        breaker = GaugeMetricFamily(
            "portal_router_breaker_open",
            "1 while the router's circuit breaker is open (or half-open).",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "portal_router_up", "1 if the router's last status probe succeeded.", labels=labels
        )
        probe = GaugeMetricFamily(
            "portal_router_probe_latency_seconds",
            "Latency of the router's last status probe.",
            labels=labels,
        )
        slow = GaugeMetricFamily(
            "portal_router_slow",
            "1 if the router's last probe found its one-token completion slower than"
            " ROUTER_SLOW_SECONDS (it is picked only as a last resort).",
            labels=labels,
        )
        total = 0
        for router in routers:
            values = [str(router.pk), router.pool.name, router.name]
            state = live.get(router.pk)
            if state is not None:
                inflight.add_metric(values, state.inflight)
                breaker.add_metric(values, 0 if state.breaker == "closed" else 1)
                total += state.inflight
            h = health.get(router.pk)
            if h is not None:
                up.add_metric(values, 1 if h.ok else 0)
                probe.add_metric(values, h.latency_ms / 1000)
                slow.add_metric(values, 1 if h.slow else 0)
        yield from (inflight, breaker, up, probe, slow)
        yield GaugeMetricFamily(
            "portal_inflight_requests", "Requests in flight on all routers.", value=total
        )

    def _pause(self, now: float):
        paused = faststate.get_client().exists(pause_key())
        yield GaugeMetricFamily(
            "portal_access_paused",
            "1 while the global access pause is on.",
            value=1 if paused else 0,
        )

    def _rollup_lag(self, now: float):
        # The rollup's work queue is indexed (usage_events_pending_idx): the lowest pending id is cheap.
        oldest = (
            UsageEvent.objects.filter(rolled_up_at__isnull=True)
            .order_by("id")
            .values_list("created_at", flat=True)
            .first()
        )
        lag = max(0.0, now - oldest.timestamp()) if oldest else 0.0
        yield GaugeMetricFamily(
            "portal_rollup_lag_seconds",
            "Age of the oldest usage event not yet in the rollups (0: none pending).",
            value=lag,
        )


def _authorized(request) -> bool:
    token = getattr(settings, "METRICS_BEARER_TOKEN", "")
    if not token:
        return settings.METRICS_PUBLIC  # closed with DEBUG off unless opened explicitly
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return header[:7].lower() == "bearer " and hmac.compare_digest(
        header[7:].strip().encode(), token.encode()
    )


@never_cache
@require_GET
def metrics_view(request):
    if not _authorized(request):
        return HttpResponse(
            "unauthorized\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return HttpResponse(
        metrics.exposition(SharedStateCollector()), content_type=CONTENT_TYPE_LATEST
    )
