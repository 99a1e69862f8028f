"""The router calls' HTTP transport: geventhttpclient's pooled connections, whose
response parser is llhttp in C.

It replaced `requests` (issue 17): at saturation a whole-answer router call cost about
260 µs of a worker's CPU through requests and urllib3 (http.client parses the status line
and headers in Python), about 70 µs here, measured on the same machine against the same
canned router.

    response = post(pools, base_url, "/api/v1/completions", body, headers,
                    connect_timeout=2.0, first_byte_timeout=60.0)
    set_read_timeout(response, 120.0)
    content = response.read()

Pools: one `HTTPClient` per (router base URL, connect timeout), per gevent hub and per
process. gevent sockets belong to the hub of the thread that made
them: under the gevent worker all greenlets share one hub, a gthread worker's threads (or
a test's threads) each get their own pools; a forked child starts with none. At most
ROUTER_POOL_HOSTS clients are kept per hub (the oldest is closed). A client holds at most
ROUTER_POOL_MAXSIZE connections, idle or in use; a call beyond them waits for one.

Timeouts: a connection taken from a pool starts at the pool's first-byte timeout, under
which the request is sent and the status line and headers are read; the caller then sets
the body's per-read timeout (`set_read_timeout`). A failure to connect (refused,
unresolvable, no connection within the connect timeout) is raised as `ConnectFailed`.
No call is retried here: the gateway's failover decides.

Proxies: with ROUTER_TRUST_ENV, HTTP_PROXY / HTTPS_PROXY (and NO_PROXY) from the
environment are used, as `requests` did.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
import urllib.request
import weakref
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPSocketPoolResponse

Response = HTTPSocketPoolResponse
USER_AGENT = "cortensor-portal"
BLOCK_SIZE = 16 * 1024
# The first-byte timeout of the call being sent (a stream's and a whole answer's differ,
# and share the connections): read by the pool when it hands out a connection.
_first_byte: ContextVar[float | None] = ContextVar("router_first_byte", default=None)


class ConnectFailed(OSError):
    """The router could not be reached: refused, unresolvable or no connection in time."""


class _RouterHTTP(HTTPClient):
    def __init__(self, base_url: str, *, size: int, connect: float, proxy):
        parts = urllib.parse.urlsplit(base_url)
        self.prefix = parts.path.rstrip("/")
        kw: dict[str, Any] = {}
        if proxy is not None:
            kw.update(
                proxy_host=proxy.hostname,
                proxy_port=proxy.port or 80,
                proxy_user=urllib.parse.unquote(proxy.username) if proxy.username else None,
                proxy_password=urllib.parse.unquote(proxy.password) if proxy.password else None,
            )
        super().__init__(
            parts.hostname,
            port=parts.port,
            ssl=parts.scheme == "https",
            concurrency=size,
            connection_timeout=connect,
            network_timeout=connect,
            headers={"User-Agent": USER_AGENT},
            block_size=BLOCK_SIZE,
            **kw,
        )
        # Every connection handed out starts at the first-byte timeout: one back from an
        # earlier call still has that call's read timeout. geventhttpclient has no per-call
        # timeout, so its pool's get_socket is wrapped (tests/pools cover both timeouts).
        pool = self._connection_pool
        get_socket = pool.get_socket

        def fresh_socket():
            try:
                sock = get_socket()
            except (OSError, RuntimeError) as exc:  # RuntimeError: the name does not resolve
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
            sock.settimeout(_first_byte.get() or connect)
            return sock

        pool.get_socket = fresh_socket


class RouterPools:
    """The HTTP clients of one process, per gevent hub (see the module docstring)."""

    def __init__(self, *, size: int = 256, hosts: int = 64, trust_env: bool = False):
        self.size, self.hosts, self.trust_env = size, hosts, trust_env
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._by_hub: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def client(self, base_url: str, connect: float) -> _RouterHTTP:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._by_hub, self._pid = weakref.WeakKeyDictionary(), os.getpid()
        hub = gevent.get_hub()
        clients = self._by_hub.get(hub)
        if clients is None:
            with self._lock:
                clients = self._by_hub.setdefault(hub, OrderedDict())
        key = (base_url, connect)
        found = clients.get(key)
        if found is None:
            found = clients[key] = _RouterHTTP(
                base_url,
                size=self.size,
                connect=connect,
                proxy=self._proxy(base_url),
            )
            while len(clients) > self.hosts:
                clients.popitem(last=False)[1].close()
        return found

    def close(self) -> None:
        for clients in list(self._by_hub.values()):
            for found in clients.values():
                found.close()
            clients.clear()

    def _proxy(self, base_url: str):
        if not self.trust_env:
            return None
        parts = urllib.parse.urlsplit(base_url)
        if urllib.request.proxy_bypass_environment(parts.hostname or ""):
            return None
        proxy = urllib.request.getproxies_environment().get(parts.scheme)
        return (
            urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        )


def post(
    pools: RouterPools,
    base_url: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    first_byte_timeout: float,
) -> Response:
    """Send a POST; returns once the status line and headers are in (the first-byte
    deadline). The caller reads the body and releases the response."""
    client = pools.client(base_url, connect_timeout)
    token = _first_byte.set(first_byte_timeout)
    try:
        return client.request("POST", client.prefix + path, body=body, headers=headers)
    finally:
        _first_byte.reset(token)


def get(
    pools: RouterPools, base_url: str, path: str, headers: dict[str, str], *, timeout: float
) -> Response:
    client = pools.client(base_url, timeout)
    token = _first_byte.set(timeout)
    try:
        return client.request("GET", client.prefix + path, headers=headers)
    finally:
        _first_byte.reset(token)


def set_read_timeout(response: Response, seconds: float) -> None:
    """Change the connection's read timeout mid-response (first byte, then per read). A
    response already read whole has given its connection back: nothing to change."""
    sock = response._sock  # geventhttpclient keeps the connection here until released
    if sock is not None:
        sock.settimeout(seconds)


def content_type(response: Response) -> str:
    value = response.get("content-type") or ""
    return value if isinstance(value, str) else value[0]
