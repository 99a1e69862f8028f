"""The fast-state client: Redis in production, an in-process stand-in otherwise.

Everything stored here can be rebuilt from Postgres (auth-context cache, limit
windows, quota counters, in-flight counts, breaker state, pause flags). One client,
redis-py (replies parsed by hiredis), serves every caller, `redis://` and `rediss://`
(TLS, as managed Redis offers) alike.
"""

from __future__ import annotations

import functools
import logging
import threading

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_scripts: dict[str, Script] = {}


@functools.cache
def get_client() -> redis.Redis:
    """The process-wide client (a connection pool underneath)."""
    if settings.REDIS_URL:
        # A blocking pool of FAST_STATE_MAX_CONNECTIONS: when every connection is busy
        # (thousands of concurrent requests in a gevent worker), a caller waits for one
        # instead of failing with "Too many connections". The wait is a queue of the
        # (monkey-patched) threading module, so under gevent it yields to the event loop.
        pool = redis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.FAST_STATE_MAX_CONNECTIONS,
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


def script(source: str) -> Script:
    """A callable running `source` in Redis: `script(src)(args=[...])`, one per source."""
    handle = _scripts.get(source)
    if handle is None:
        with _lock:
            handle = _scripts.setdefault(source, Script(get_client().register_script(source)))
    return handle


class Script:
    """redis-py's script handle (EVALSHA, reloaded after a SCRIPT FLUSH or a restart)."""

    def __init__(self, script):
        self._script = script

    def __call__(self, keys=(), args=()):
        return self._script(keys=list(keys), args=list(args))

    def begin(self, keys=(), args=()) -> Reply:
        """Run the script now; `.wait()` on the answer returns its reply (the caller's
        interface allows a reply to be read later)."""
        return Reply(self(keys=keys, args=args))


class Reply:
    __slots__ = ("reply",)

    def __init__(self, reply):
        self.reply = reply

    def wait(self):
        return self.reply


def key(*parts: object) -> str:
    """A namespaced fast-state key: `portal:authctx:abc`."""
    return settings.FAST_STATE_PREFIX + ":".join(str(p) for p in parts)


def reset_client_for_tests() -> None:
    get_client.cache_clear()
    _scripts.clear()
