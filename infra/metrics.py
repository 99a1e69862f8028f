"""Prometheus metrics the web processes record; `/metrics` (ops.metrics) exposes them.

The gateway calls `observe_request(...)` once per request, at its end
(`gateway/flow.py::_finish`): a few in-memory increments, no I/O.

Several worker processes: with PROMETHEUS_MULTIPROC_DIR set (portal/gunicorn.py sets it
to a directory it empties at server start), every process writes its samples to
memory-mapped files there and a scrape of any worker sums them all (prometheus_client's
multiprocess mode). Without it, each process counts alone: right for one process only.
Gauges that describe shared state (in-flight requests, breakers, rollup lag) are read at
scrape time from fast state and Postgres instead, so they are right in both modes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

REQUESTS = Counter(
    "portal_gateway_requests",
    "Gateway requests by endpoint, model, HTTP status and stable error code ('' for success).",
    ["endpoint", "model", "status", "code"],
)
LATENCY = Histogram(
    "portal_gateway_request_duration_seconds",
    "Gateway request duration, from arrival to the last byte (streams: until they end).",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
)
TTFB = Histogram(
    "portal_gateway_time_to_first_byte_seconds",
    "Time until the router's first answer byte reached the gateway.",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "portal_upstream_errors",
    "Router failures seen by the gateway (connect, timeout, 5xx, broken streams), by router id.",
    ["router"],
)
REJECTIONS = Counter(
    "portal_limit_rejections",
    "Requests refused by a rate limit or the plan's allowance.",
    ["kind"],
)
TOKENS = Counter(
    "portal_gateway_tokens",
    "Tokens served (prompt + completion), by model.",
    ["model"],
)

USAGE_CAPPED = Counter(
    "portal_router_usage_capped",
    "Answers whose router claimed more tokens than billing allows (gateway/tokens.py), by router id.",
    ["router"],
)

REJECTION_KINDS = {"rate_limit_exceeded": "rate_limit", "insufficient_quota": "quota"}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_request(
    *,
    endpoint: str,
    model: str,
    status: int,
    code: str,
    latency_ms: int,
    ttfb_ms: int | None,
    tokens: int,
    failed_routers: Iterable[int] = (),
) -> None:
    """Count one finished gateway request. `model` is a catalog name or "" (never raw input:
    label values must stay few). Never raises: metrics must not fail a request."""
    try:
        model = model or "-"
        REQUESTS.labels(endpoint, model, str(status), code).inc()
        LATENCY.labels(endpoint, model).observe(latency_ms / 1000)
        if ttfb_ms is not None:
            TTFB.labels(endpoint, model).observe(ttfb_ms / 1000)
        for router_id in failed_routers:
            UPSTREAM_ERRORS.labels(str(router_id)).inc()
        kind = REJECTION_KINDS.get(code)
        if kind:
            REJECTIONS.labels(kind).inc()
        if tokens:
            TOKENS.labels(model).inc(tokens)
    except Exception:
        logger.exception("could not record request metrics")


def usage_capped(router_id: int | None) -> None:
    """Count one over-reported usage claim of `router_id`. Never raises."""
    try:
        USAGE_CAPPED.labels(str(router_id) if router_id is not None else "-").inc()
    except Exception:
        logger.exception("could not record request metrics")


def exposition(*collectors) -> bytes:
    """The text exposition of every process's samples plus `collectors` (read at scrape time)."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        prometheus_multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class _ThisProcess:
    """The default registry (this process's samples) as one collector of a scrape registry."""

    def collect(self):
        return REGISTRY.collect()
