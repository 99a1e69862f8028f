"""The fast-state client: Redis in production, an in-process stand-in otherwise.

Everything stored here can be rebuilt from Postgres (auth-context cache, limit
windows, quota counters, in-flight counts, breaker state, pause flags).
"""

from __future__ import annotations

import logging
import sys
import threading

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_client: redis.Redis | None = None
_script_client: object | None = (
    None  # respclient.ScriptClient or respmux.MuxClient; False: redis-py serves scripts
)
_scripts: dict[str, object] = {}


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


def script(source: str):
    """A callable running `source` in Redis: `script(src)(args=[...])`.

    Over a plain TCP Redis the lean client in infra/respclient.py runs it (the request
    path's two calls per request cost less than half as much CPU), or under gevent its
    one-connection variant in infra/respmux.py; otherwise redis-py does.
    """
    global _script_client
    handle = _scripts.get(source)
    if handle is not None:
        return handle
    client = get_client()
    with _lock:
        if _script_client is None:
            _script_client = _make_script_client(client) or False
        if _script_client:
            from infra.respclient import Script

            handle = Script(_script_client, source)
        else:
            handle = _RedisPyScript(client.register_script(source))
        _scripts[source] = handle
    return handle


class _RedisPyScript:
    """redis-py's script handle with the lean client's interface (`begin` runs at once)."""

    def __init__(self, script):
        self._script = script

    def __call__(self, keys=(), args=()):
        return self._script(keys=list(keys), args=list(args))

    def begin(self, keys=(), args=()):
        return _Done(self(keys=keys, args=args))


class _Done:
    __slots__ = ("reply",)

    def __init__(self, reply):
        self.reply = reply

    def wait(self):
        return self.reply


def _make_script_client(client):
    pool = getattr(client, "connection_pool", None)
    if pool is None or pool.connection_class is not redis.Connection:
        return None  # the in-process stand-in, TLS or a unix socket: redis-py serves scripts
    try:
        from infra.respclient import ScriptClient
    except ImportError:  # hiredis missing
        return None
    kw = pool.connection_kwargs
    common = dict(
        host=kw.get("host", "localhost"),
        port=int(kw.get("port", 6379)),
        db=int(kw.get("db", 0) or 0),
        username=kw.get("username"),
        password=kw.get("password"),
        socket_timeout=kw.get("socket_timeout") or 2.0,
        connect_timeout=kw.get("socket_connect_timeout") or 2.0,
    )
    if _gevent_patched():  # the gevent web worker: one connection shared by its greenlets
        from infra.respmux import MuxClient

        return MuxClient(**common)
    return ScriptClient(**common, max_connections=pool.max_connections)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


def key(*parts: object) -> str:
    """A namespaced fast-state key: `portal:authctx:abc`."""
    return settings.FAST_STATE_PREFIX + ":".join(str(p) for p in parts)


def reset_client_for_tests() -> None:
    global _client, _script_client
    _client = None
    if _script_client:
        _script_client.close()
    _script_client = None
    _scripts.clear()
