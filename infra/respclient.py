"""A lean Redis client for the request path's scripts (gateway/limits.py).

Every gateway request makes two script calls (admission, settlement). This client does
only that: EVALSHA on a pooled connection, the reply parsed by hiredis, NOSCRIPT
answered by SCRIPT LOAD and one retry. A call can be sent and its reply read later
(`Script.begin(...).wait()`), so the settlement overlaps the request's Postgres write.
Errors are redis-py's exception classes, so callers catch one family. On an interleaved
A/B (bench/README.md, "one Redis client and the stock gevent worker") the gateway with
these clients served 714 saturated req/s (median of four quiet rounds) against 627 with
redis-py for the scripts (+14 %), and redis-py cost about 0.4 ms more gateway CPU per
request.

It speaks redis:// and rediss:// alike: where and how it connects (TLS included) is an
`Endpoint` (infra/redisendpoint.py). infra/respmux.py is the
gevent worker's one-connection variant; infra/faststate.py picks between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import threading

import hiredis
from redis.exceptions import (
    ConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError,
)

from infra.redisendpoint import Endpoint, _ClosedBeforeReply, _read_reply


class _Connection:
    __slots__ = ("buf", "reader", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.buf = bytearray(16384)

    def send(self, packed: bytes) -> None:
        try:
            self.sock.sendall(packed)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError) as exc:
            raise _ClosedBeforeReply(f"Redis closed the connection: {exc}") from exc

    def receive(self):
        return _read_reply(self.sock, self.reader, self.buf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _slots(count: int):
    """A bounded semaphore: gevent's own when gevent patched threading. The patched
    `threading.BoundedSemaphore` is a Condition over a patched lock, whose every release
    tries the lock it holds and, failing, yields to the event loop: two detours per call
    on the request path. gevent's semaphore waits the same way (other greenlets run)."""
    try:
        from gevent import monkey
    except ImportError:  # gevent is not installed
        return threading.BoundedSemaphore(count)
    if monkey.is_module_patched("threading"):
        from gevent.lock import BoundedSemaphore

        return BoundedSemaphore(count)
    return threading.BoundedSemaphore(count)


class ScriptClient:
    """EVALSHA over a bounded pool of connections, safe across threads and greenlets."""

    def __init__(
        self, endpoint: Endpoint, *, max_connections: int = 128, wait_timeout: float = 2.0
    ):
        self.endpoint = endpoint
        self.max_connections = max_connections
        self.wait_timeout = wait_timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: list[_Connection] = []
        self._slots = _slots(self.max_connections)

    def _connect(self) -> _Connection:
        return _Connection(self.endpoint.connect())

    def execute(self, *command):
        """Send one command and return its reply; a Redis error reply is raised."""
        return self.begin(*command).wait()

    def begin(self, *command) -> Pending:
        """Send one command now and read its reply later (`.wait()`), so the caller can do
        other I/O meanwhile. The connection is held until then."""
        if self._pid != os.getpid():  # forked (a gunicorn worker): never share the parent's sockets
            self._reset()
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise ConnectionError("No Redis connection available.")
        try:
            conn, reused = (self._idle.pop(), True) if self._idle else (self._connect(), False)
        except BaseException:
            self._slots.release()
            raise
        return Pending(self, conn, reused, hiredis.pack_command(command))

    def _done(self, conn: _Connection | None) -> None:
        if conn is not None:
            self._idle.append(conn)
        self._slots.release()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class Pending:
    """A command sent whose reply is still to be read.

    A connection taken from the pool may have been closed while it sat there (Redis
    restarted, or dropped idle clients): if it turns out closed before any of the reply
    came back, the command cannot have run, and it is sent again, once, on a new
    connection."""

    __slots__ = ("client", "conn", "packed", "reply", "reused")

    def __init__(self, client: ScriptClient, conn: _Connection, reused: bool, packed: bytes):
        self.client = client
        self.conn = conn
        self.reused = reused
        self.packed = packed
        self.reply = None
        self._send()

    def _send(self) -> None:
        try:
            self.conn.send(self.packed)
        except BaseException as exc:
            self._reconnect_or_fail(exc)
            self._send()

    def _receive(self):
        try:
            return self.conn.receive()
        except BaseException as exc:
            self._reconnect_or_fail(exc)
            self._send()
            return self._receive()

    def _reconnect_or_fail(self, exc: BaseException) -> None:
        """After `exc` on the connection: a new connection when the one from the pool was
        found closed (once per call), else the connection is dropped and `exc` raised."""
        self.conn.close()  # it may still owe a reply: it never goes back to the pool
        if not (self.reused and isinstance(exc, _ClosedBeforeReply)):
            self._fail(exc)
        self.reused = False
        try:
            self.conn = self.client._connect()
        except BaseException as again:
            self._fail(again)

    def _fail(self, exc: BaseException):
        self.conn = None
        self.client._done(None)
        if isinstance(exc, socket.timeout):
            raise TimeoutError("Timeout reading from Redis.") from exc
        if isinstance(exc, (OSError, hiredis.ProtocolError)):
            raise ConnectionError(f"Error talking to Redis: {exc}") from exc
        raise exc

    def wait(self):
        """The reply (read once); a Redis error reply is raised."""
        if self.conn is not None:
            self.reply = self._receive()
            self.client._done(self.conn)
            self.conn = None
        reply = self.reply
        if isinstance(reply, ResponseError):
            raise NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else reply
        return reply


class Script:
    """A Lua script run by its SHA1, loaded into Redis on first use (and after a flush or
    a restart). `client` is a ScriptClient or an infra/respmux.py MuxClient."""

    def __init__(self, client, source: str):
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys=(), args=()):
        return self.begin(keys=keys, args=args).wait()

    def begin(self, keys=(), args=()) -> ScriptCall:
        """Run the script without waiting for its answer: `.wait()` reads it."""
        return ScriptCall(self, keys, args)


class ScriptCall:
    __slots__ = ("args", "keys", "pending", "script")

    def __init__(self, script: Script, keys, args):
        self.script, self.keys, self.args = script, keys, args
        self.pending = script.client.begin("EVALSHA", script.sha, len(keys), *keys, *args)

    def wait(self):
        try:
            return self.pending.wait()
        except NoScriptError:  # Redis restarted or its script cache was flushed
            client = self.script.client
            client.execute("SCRIPT", "LOAD", self.script.source)
            return client.execute(
                "EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args
            )
