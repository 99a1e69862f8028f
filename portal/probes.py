"""Liveness and readiness for load balancers and orchestrators.

`/healthz`: the process answers (no dependency is touched). `/readyz`: Postgres, fast
state (Redis) and the Celery broker answer within a short timeout; 503 names the
failing check. Neither shows an address or a credential.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from infra import faststate

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _fast_state() -> None:
    if not faststate.get_client().ping():
        raise RuntimeError("no PONG")


def _broker() -> str | None:
    """Ping the Celery broker; None when tasks run eagerly in-process (nothing to reach)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or settings.CELERY_BROKER_URL.startswith("memory://"):
        return "skipped"
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        try:
            if not client.ping():
                raise RuntimeError("no PONG")
        finally:
            client.close()
        return None
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)
    return None


CHECKS: dict[str, Callable[[], str | None]] = {
    "database": _database,
    "fast_state": _fast_state,
    "broker": _broker,
}


@never_cache
@require_GET
def readyz(request):
    results: dict[str, dict] = {}
    ready = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            outcome = check() or "ok"
        except (
            Exception
        ) as exc:  # any failure means "not ready"; the log says why, the body does not
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            outcome, ready = "fail", False
        results[name] = {"status": outcome, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return JsonResponse(
        {"status": "ok" if ready else "fail", "checks": results}, status=200 if ready else 503
    )
