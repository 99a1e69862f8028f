"""The fast-state client: Redis in production, an in-process stand-in otherwise.

Everything stored here can be rebuilt from Postgres (auth-context cache, limit
windows, quota counters, in-flight counts, breaker state, pause flags).

Two ways in. `get_client()` is redis-py (hiredis underneath) for every command;
`script(source)` runs a Lua script, as the request path's two calls per request do
(gateway/limits.py), over the `Transport` chosen once per process (`transport()`):

- MUX, infra/respmux.py: in a gevent-patched process (the web worker), one connection
  shared by the worker's greenlets;
- POOLED, infra/respclient.py: in any other process (Celery, management commands, the
  tests), a bounded pool of connections;
- REDIS_PY, redis-py's own script handles: without REDIS_URL (the in-process stand-in),
  or for a URL the lean clients do not serve (a unix socket, the OCSP options).

The lean clients serve redis:// and rediss:// alike, reading the URL (TLS options
included) as redis-py does.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import redis
from django.conf import settings

if TYPE_CHECKING:
    from infra.respclient import ScriptClient
    from infra.respmux import MuxClient

logger = logging.getLogger(__name__)
_lock = threading.RLock()  # re-entered: making a script handle may make the client
_client: redis.Redis | None = None


class Transport(enum.Enum):
    """How this process's fast-state scripts reach Redis."""

    MUX = "respmux"
    POOLED = "respclient"
    REDIS_PY = "redis-py"


class ScriptHandle(Protocol):
    """What `script()` returns: `handle(keys=..., args=...)` runs the script;
    `handle.begin(...)` sends it and `.wait()` on the result reads the reply."""

    def __call__(self, keys=(), args=()): ...

    def begin(self, keys=(), args=()): ...


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


# --- scripts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scripts:
    """The transport chosen for this process and, for MUX and POOLED, its client."""

    transport: Transport
    lean_client: MuxClient | ScriptClient | None  # None for REDIS_PY

    def handle(self, source: str) -> ScriptHandle:
        if self.transport is Transport.REDIS_PY:
            return _RedisPyScript(get_client().register_script(source))
        from infra.respclient import Script

        return Script(self.lean_client, source)

    def close(self) -> None:
        if self.lean_client is not None:
            self.lean_client.close()


_scripts_via: _Scripts | None = None  # chosen on the first script() (or transport()) call
_handles: dict[str, ScriptHandle] = {}


def script(source: str) -> ScriptHandle:
    """A handle running `source` in Redis: `script(src)(args=[...])`. One handle per
    source, made once: after that this is one dictionary lookup."""
    handle = _handles.get(source)
    if handle is None:
        with _lock:
            handle = _handles.get(source)
            if handle is None:
                handle = _handles[source] = _scripts().handle(source)
    return handle


def transport() -> Transport:
    """The transport this process's scripts take."""
    with _lock:
        return _scripts().transport


def _scripts() -> _Scripts:
    """This process's script transport, chosen on first use (the caller holds _lock)."""
    global _scripts_via
    if _scripts_via is None:
        client = get_client()
        chosen = choose_transport(client, gevent_patched=_gevent_patched())
        _scripts_via = _Scripts(chosen, _make_lean_client(chosen, client))
        logger.debug("fast-state scripts over %s", chosen.value)
    return _scripts_via


def choose_transport(client: redis.Redis, *, gevent_patched: bool) -> Transport:
    """MUX or POOLED for a redis:// or rediss:// Redis, as the process runs; REDIS_PY for
    the stand-in, a unix socket, or an option only redis-py honours."""
    from infra.redisendpoint import REDIS_PY_ONLY_OPTIONS

    pool = client.connection_pool
    if pool.connection_class not in (redis.Connection, redis.SSLConnection):
        return Transport.REDIS_PY  # the stand-in (fakeredis) or a unix socket
    redis_py_only = [name for name in REDIS_PY_ONLY_OPTIONS if pool.connection_kwargs.get(name)]
    if redis_py_only:
        logger.info("fast-state scripts go through redis-py for %s", ", ".join(redis_py_only))
        return Transport.REDIS_PY
    return Transport.MUX if gevent_patched else Transport.POOLED


def _make_lean_client(chosen: Transport, client: redis.Redis) -> MuxClient | ScriptClient | None:
    if chosen is Transport.REDIS_PY:
        return None
    from infra.redisendpoint import Endpoint
    from infra.respclient import ScriptClient

    pool = client.connection_pool
    endpoint = Endpoint.from_options(pool.connection_kwargs, pool.connection_class)
    if chosen is Transport.MUX:
        from infra.respmux import MuxClient

        return MuxClient(endpoint)
    return ScriptClient(endpoint, max_connections=pool.max_connections)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("socket"))


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


def reset_client_for_tests() -> None:
    global _client, _scripts_via
    with _lock:
        _client = None
        if _scripts_via is not None:
            _scripts_via.close()
        _scripts_via = None
        _handles.clear()
