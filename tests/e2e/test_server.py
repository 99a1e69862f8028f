"""The production web server (portal/gunicorn.py: gevent, pooled Postgres) as a client
meets it: pooled connections are not held through router calls, and idle or slow
connections are closed."""

from __future__ import annotations

import http.client
import socket
import time
from urllib.parse import urlsplit

import pytest

from metering.models import RequestLog
from pools.catalog import catalog_bump_version
from tests.factories import seeding
from tests.support.concurrency import at_once
from tests.support.wire import chat, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_burst_of_cold_requests_does_not_hold_the_database_pool_through_router_calls(
    simulators, gateway
):
    """Each first request of a key reads Postgres (its auth context, its allowance); with
    the connection kept until the request ends, ten of them waiting 1.5 s on the router
    would hold a pool of two, and the rest would time out waiting for it."""
    (router,) = simulators(1, latency_ms=1500)
    server = gateway(DB_POOL_MAX_SIZE="2", DB_POOL_TIMEOUT="1")
    seeding.catalog(router_urls=[router.url])
    tenants = [seeding.tenant(f"cold{i}@example.com") for i in range(10)]

    responses = at_once([lambda t=t: chat(server, t.secret) for t in tenants])

    assert [r.status_code for r in responses] == [200] * 10
    assert eventually(lambda: RequestLog.objects.filter(status_code=200).count() == 10)


def _connect(server) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def test_an_idle_connection_is_closed_after_the_keepalive(gateway):
    server = gateway(GUNICORN_CMD_ARGS="--keep-alive 2")  # WEB_KEEPALIVE under portal/gunicorn.py
    _ = server.url  # started
    with _connect(server) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""  # nothing sent: the server hangs up
        waited = time.monotonic() - started
    assert 1.5 <= waited < 6


def test_a_request_head_sent_too_slowly_is_cut_off_after_the_keepalive(gateway):
    server = gateway(GUNICORN_CMD_ARGS="--keep-alive 1")
    _ = server.url  # started
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(1024):
            answer += chunk
        assert answer == b""  # closed without an answer
        assert time.monotonic() - started < 5


def test_keep_alive_serves_several_requests_on_one_connection(gateway):
    server = gateway()
    address = urlsplit(server.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    sockets = []
    for _ in range(3):
        conn.request("GET", "/healthz")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read()
        sockets.append(conn.sock)
    conn.close()
    assert sockets[0] is sockets[1] is sockets[2]  # never reconnected


def test_cold_keys_and_a_catalog_change_at_once_do_not_stall_the_pool(simulators, gateway):
    """A burst meets a changed catalog: one request reloads it under a lock while the
    others wait. Requests of cold keys have read Postgres by then (their auth contexts);
    had they waited holding their pooled connections, a warm key's request holding the
    lock would find none left to load with (a pool of two, a 3 s wait)."""
    (router,) = simulators(1)
    server = gateway(DB_POOL_MAX_SIZE="2", DB_POOL_TIMEOUT="3")
    seeding.catalog(router_urls=[router.url])
    warm = seeding.tenant("warm@example.com")
    cold = [seeding.tenant(f"cold{i}@example.com") for i in range(12)]
    assert chat(server, warm.secret).status_code == 200  # the process has a catalog and this key
    catalog_bump_version()

    calls = [lambda t=t: chat(server, t.secret) for t in cold] + [
        lambda: chat(server, warm.secret)
    ] * 12
    responses = at_once(calls)

    assert [r.status_code for r in responses] == [200] * 24
