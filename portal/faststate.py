"""The fast-state client: Redis in production, an in-process stand-in otherwise.

Everything stored here can be rebuilt from Postgres (auth-context cache, limit
windows, quota counters, in-flight counts, breaker state, pause flags).
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_client: redis.Redis | None = None


def get_client() -> redis.Redis:
    """The process-wide client (a connection pool underneath)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = _make_client()
    return _client


def _make_client() -> redis.Redis:
    if settings.REDIS_URL:
        # A blocking pool: when every connection is busy (thousands of concurrent requests
        # under the gevent server), a caller waits briefly for one instead of failing with
        # "Too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=getattr(settings, "FAST_STATE_MAX_CONNECTIONS", 128),
            timeout=2.0,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
        )
        return redis.Redis(connection_pool=pool)
    import fakeredis

    if not settings.TESTING:
        logger.warning(
            "REDIS_URL is not set: using an in-process fast-state stand-in. "
            "Limits hold for this one process only; set REDIS_URL for anything else."
        )
    return fakeredis.FakeRedis()


def key(*parts: object) -> str:
    """A namespaced fast-state key: `portal:authctx:abc`."""
    return settings.FAST_STATE_PREFIX + ":".join(str(p) for p in parts)


def reset_client_for_tests() -> None:
    global _client
    _client = None
