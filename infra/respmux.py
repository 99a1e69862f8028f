"""The request path's Redis scripts under gevent: one shared connection per worker.

infra/respclient.py's pooled client gives each in-flight call a connection of its own:
under load a worker holds a dozen, each call is a wake-up of Redis for one command and
a wake-up of the worker for one reply. Here every greenlet of the worker sends on one
connection and one reader greenlet reads the replies, handing each to its caller in the
order the commands went out (Redis answers a connection in order). Sends are batched:
the first caller of a turn of the event loop yields once, the greenlets ready to run
queue their commands meanwhile, and it sends them all in one write (in the order their
replies are owed), so Redis reads, runs and answers them on one wake-up and one read in
the worker brings back their replies. At saturation with every check on that is 39 %
less Redis CPU per request than one write per command, and enforcement on went from
about 75 % to 84-86 % of off (bench/README.md, "Enforcement overhead"); a lone caller's
latency is unchanged (its yield finds nobody to wait for).

The interface is respclient.ScriptClient's (`begin(...).wait()`, `execute`), with the
same errors (redis-py's classes) and the same `Endpoint`, so redis:// and rediss:// alike
(over TLS too the reader greenlet reads while callers write: gevent's SSL socket waits
for reading and for writing apart, and Redis never renegotiates, which would make a
write wait for reading). A reply not back within `socket_timeout`, a closed
connection or a broken one fails every call in flight on it (as each would have failed
on a connection of its own), and the next call connects again. infra/faststate.py
picks this client when gevent has patched the standard library (the gevent web worker);
threads (Celery, gthread) keep the pooled client.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import deque

import gevent
import hiredis
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from infra.redisendpoint import Endpoint


class _Link:
    """One connection: its socket, its reply parser and the callers owed a reply, in order."""

    __slots__ = ("broken", "flushing", "out", "owed", "reader", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.owed: deque[AsyncResult] = deque()
        self.broken: BaseException | None = None
        self.out: list[bytes] = []  # packed commands not sent yet, in `owed` order
        self.flushing = False  # a caller is sending `out`


class MuxClient:
    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._pid = os.getpid()
        self._link: _Link | None = None
        self._sending = Semaphore(1)

    # --- connection ------------------------------------------------------------------

    def _connect(self) -> _Link:
        sock = self.endpoint.connect()
        # From here on each caller times out on its own reply (MuxPending.wait), which
        # breaks the link for all; the reader just waits, however long the link is idle.
        sock.settimeout(None)
        link = _Link(sock)
        gevent.spawn(self._read_replies, link)
        return link

    def _read_replies(self, link: _Link) -> None:
        buf = bytearray(65536)
        sock, reader, owed = link.sock, link.reader, link.owed
        try:
            while link.broken is None:
                n = sock.recv_into(buf)
                if not n:
                    raise ConnectionError("Redis closed the connection.")
                reader.feed(buf, 0, n)
                while (reply := reader.gets()) is not False:
                    owed.popleft().set(reply)
        except BaseException as exc:
            self._break(link, exc)

    def _break(self, link: _Link, exc: BaseException) -> None:
        """Close `link` and fail every call still owed a reply on it."""
        if link.broken is None:
            if isinstance(exc, (ConnectionError, TimeoutError)):
                link.broken = exc
            elif isinstance(exc, socket.timeout):
                link.broken = TimeoutError("Timeout talking to Redis.")
            else:
                link.broken = ConnectionError(f"Error talking to Redis: {exc!r}")
            with contextlib.suppress(OSError):
                link.sock.close()
        if self._link is link:
            self._link = None
        while link.owed:
            link.owed.popleft().set_exception(link.broken)

    # --- calls -----------------------------------------------------------------------

    def begin(self, *command) -> MuxPending:
        """Send one command; `.wait()` returns its reply. Commands from greenlets that run
        in the same turn of the event loop go out in one write (one wake-up of Redis)."""
        if self._pid != os.getpid():  # forked: the parent's socket is not ours
            self._pid, self._link = os.getpid(), None
        packed = hiredis.pack_command(command)
        result = AsyncResult()
        link = self._link
        if link is None:
            with self._sending:
                link = self._link
                if link is None:
                    link = self._link = self._connect()
        link.owed.append(result)
        link.out.append(packed)
        if not link.flushing:
            # The first caller sends for every greenlet ready to run now: it yields once,
            # the others add their commands, and one write takes them all.
            link.flushing = True
            interrupted = None
            try:
                gevent.sleep(0)
            except BaseException as exc:  # e.g. this caller's gevent.Timeout: the others'
                interrupted = exc  # commands still go out, then it is raised
            try:
                while link.out and link.broken is None:
                    data = b"".join(link.out) if len(link.out) > 1 else link.out[0]
                    link.out.clear()
                    link.sock.sendall(data)
            except BaseException as exc:
                self._break(link, exc)
            finally:
                link.flushing = False
            if interrupted is not None:
                raise interrupted
        return MuxPending(self, link, result)

    def execute(self, *command):
        return self.begin(*command).wait()

    def close(self) -> None:
        if self._link is not None:
            self._break(self._link, ConnectionError("The client was closed."))


class MuxPending:
    __slots__ = ("client", "link", "result")

    def __init__(self, client: MuxClient, link: _Link, result: AsyncResult):
        self.client, self.link, self.result = client, link, result

    def wait(self):
        """The reply; a Redis error reply is raised (NoScriptError for NOSCRIPT)."""
        try:
            reply = self.result.get(timeout=self.client.endpoint.socket_timeout)
        except gevent.Timeout:
            self.client._break(self.link, TimeoutError("Timeout reading from Redis."))
            raise self.link.broken from None
        if isinstance(reply, ResponseError):
            raise NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else reply
        return reply
