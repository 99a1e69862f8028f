"""A lean Redis client for the request path's scripts (gateway/limits.py).

Every gateway request makes two script calls (admission, settlement). Through redis-py
each costs about 145 µs of gateway CPU under gevent (bench/README.md: observability
hooks, pool bookkeeping and a readiness poll on every checkout) against about 60 µs for
the same EVALSHA over a plain pooled socket. This client does only that: EVALSHA on a
pooled connection, the reply parsed by hiredis, NOSCRIPT answered by SCRIPT LOAD and one
retry. A call can be sent and its reply read later (`Script.begin(...).wait()`), so the
settlement overlaps the request's Postgres write. Errors are redis-py's exception
classes, so callers catch one family.

It serves plain TCP connections (redis://); for TLS (rediss://) or a unix socket the
scripts keep going through redis-py (infra/faststate.py decides).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import socket
import threading
from dataclasses import dataclass

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError


class _Connection:
    __slots__ = ("buf", "reader", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.buf = bytearray(16384)

    def send(self, packed: bytes) -> None:
        self.sock.sendall(packed)

    def receive(self):
        reader, buf, sock = self.reader, self.buf, self.sock
        while True:
            n = sock.recv_into(buf)
            if not n:
                raise ConnectionError("Redis closed the connection.")
            reader.feed(buf, 0, n)
            reply = reader.gets()
            if reply is not False:
                return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: shared by this client and infra/respmux.py's."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    socket_timeout: float = 2.0
    connect_timeout: float = 2.0

    def connect(self) -> socket.socket:
        """A connected socket, authenticated and on `db`, with `socket_timeout` set. Errors
        are redis-py's ConnectionError or TimeoutError."""
        address = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"Timeout connecting to Redis at {address}.") from exc
        except OSError as exc:
            raise ConnectionError(f"Error connecting to Redis at {address}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        prelude = []
        if self.password:
            prelude.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            prelude.append(("SELECT", self.db))
        try:
            reader, buf = hiredis.Reader(replyError=ResponseError), bytearray(4096)
            for command in prelude:
                sock.sendall(hiredis.pack_command(command))
                while (reply := reader.gets()) is False:
                    n = sock.recv_into(buf)
                    if not n:
                        raise ConnectionError("Redis closed the connection.")
                    reader.feed(buf, 0, n)
                if isinstance(reply, ResponseError):
                    raise ConnectionError(f"Redis refused {command[0]}: {reply}")
        except BaseException as exc:
            sock.close()
            if isinstance(exc, socket.timeout):
                raise TimeoutError(
                    f"Timeout setting up the Redis connection to {address}."
                ) from exc
            if isinstance(exc, OSError):
                raise ConnectionError(
                    f"Error setting up the Redis connection to {address}: {exc}"
                ) from exc
            raise
        return sock


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
    """EVALSHA over a bounded pool of plain connections, safe across threads and greenlets."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        max_connections: int = 128,
        wait_timeout: float = 2.0,
    ):
        self.endpoint = Endpoint(
            host, port, db, username, password, socket_timeout, connect_timeout
        )
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
            conn = self._idle.pop() if self._idle else self._connect()
        except BaseException:
            self._slots.release()
            raise
        pending = Pending(self, conn)
        pending._io(conn.send, hiredis.pack_command(command))
        return pending

    def _done(self, conn: _Connection | None) -> None:
        if conn is not None:
            self._idle.append(conn)
        self._slots.release()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class Pending:
    """A command sent whose reply is still to be read."""

    __slots__ = ("client", "conn", "reply")

    def __init__(self, client: ScriptClient, conn: _Connection):
        self.client = client
        self.conn = conn
        self.reply = None

    def _io(self, action, *args):
        try:
            return action(*args)
        except BaseException as exc:
            # The connection may still owe a reply: it never goes back to the pool.
            self.conn.close()
            self.client._done(None)
            self.conn = None
            if isinstance(exc, socket.timeout):
                raise TimeoutError("Timeout reading from Redis.") from exc
            if isinstance(exc, (OSError, hiredis.ProtocolError)):
                raise ConnectionError(f"Error talking to Redis: {exc}") from exc
            raise

    def wait(self):
        """The reply (read once); a Redis error reply is raised."""
        if self.conn is not None:
            self.reply = self._io(self.conn.receive)
            self.client._done(self.conn)
            self.conn = None
        reply = self.reply
        if isinstance(reply, ResponseError):
            raise NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else reply
        return reply


class Script:
    """A Lua script run by its SHA1, loaded into Redis on first use (and after a flush)."""

    def __init__(self, client: ScriptClient, source: str):
        import hashlib

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
