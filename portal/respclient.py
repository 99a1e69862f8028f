"""A lean Redis client for the request path's scripts (gateway/limits.py).

Every gateway request makes two script calls (admission, settlement). Through redis-py
each costs about 145 µs of gateway CPU under gevent (bench/README.md: observability
hooks, pool bookkeeping and a readiness poll on every checkout) against about 60 µs for
the same EVALSHA over a plain pooled socket. This client does only that: EVALSHA on a
pooled connection, the reply parsed by hiredis, NOSCRIPT answered by SCRIPT LOAD and one
retry. Errors are redis-py's exception classes, so callers catch one family.

It serves plain TCP connections (redis://); for TLS (rediss://) or a unix socket the
scripts keep going through redis-py (portal/faststate.py decides).
"""

from __future__ import annotations

import os
import socket
import threading

import hiredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError


class _Connection:
    __slots__ = ("sock", "reader", "buf")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.buf = bytearray(16384)

    def call(self, packed: bytes):
        self.sock.sendall(packed)
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
        try:
            self.sock.close()
        except OSError:
            pass


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
        self.address = (host, port)
        self.db = db
        self.username = username
        self.password = password
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.wait_timeout = wait_timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: list[_Connection] = []
        # Under gevent, threading is patched: waiting for a slot yields to other greenlets.
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        except socket.timeout as exc:
            raise TimeoutError(f"Timeout connecting to Redis at {self.address[0]}:{self.address[1]}.") from exc
        except OSError as exc:
            raise ConnectionError(f"Error connecting to Redis at {self.address[0]}:{self.address[1]}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        conn = _Connection(sock)
        try:
            if self.password:
                auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                self._expect_ok(conn, auth)
            if self.db:
                self._expect_ok(conn, ("SELECT", self.db))
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _expect_ok(conn: _Connection, command: tuple) -> None:
        reply = conn.call(hiredis.pack_command(command))
        if isinstance(reply, ResponseError):
            raise ConnectionError(f"Redis refused {command[0]}: {reply}")

    def execute(self, *command):
        """Send one command and return its reply; a Redis error reply is raised."""
        if self._pid != os.getpid():  # forked (a gunicorn worker): never share the parent's sockets
            self._reset()
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise ConnectionError("No Redis connection available.")
        try:
            conn = self._idle.pop() if self._idle else self._connect()
            try:
                reply = conn.call(hiredis.pack_command(command))
            except socket.timeout as exc:
                conn.close()
                raise TimeoutError("Timeout reading from Redis.") from exc
            except (OSError, hiredis.ProtocolError) as exc:
                conn.close()
                raise ConnectionError(f"Error talking to Redis: {exc}") from exc
            except BaseException:  # e.g. a greenlet killed mid-call: the reply may still come
                conn.close()
                raise
            self._idle.append(conn)
        finally:
            self._slots.release()
        if isinstance(reply, ResponseError):
            raise NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else reply
        return reply

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class Script:
    """A Lua script run by its SHA1, loaded into Redis on first use (and after a flush)."""

    def __init__(self, client: ScriptClient, source: str):
        import hashlib

        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys=(), args=()):
        try:
            return self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.client.execute("SCRIPT", "LOAD", self.source)
            return self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
