"""What unauthenticated traffic and slow clients cost a live gateway: junk keys write no
request-log rows and get 429 past the per-address limit; a key is checked before the
body is read; a body that does not arrive ends in 408 within its deadline while the
server keeps answering others."""

from __future__ import annotations

import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from metering.models import RequestLog
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MESSAGES = [{"role": "user", "content": "hello"}]


def chat(url: str, secret: str, *, address: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    if address is not None:
        headers["X-Forwarded-For"] = f"10.9.9.9, {address}"  # the left entry is a client's claim
    return requests.post(
        f"{url}/v1/chat/completions",
        json={"model": seeding.MODEL, "messages": MESSAGES},
        headers=headers,
        timeout=30,
    )


def junk_key() -> str:
    return "ctr_live_" + secrets.token_urlsafe(32)[:43]


def test_junk_keys_write_no_rows_and_an_address_over_its_limit_gets_429(simulators, gateway):
    (sim,) = simulators(1)
    seeding.catalog(router_urls=[sim.url])
    tenant = seeding.tenant()
    server = gateway(GATEWAY_AUTH_FAILURES_PER_MINUTE="50", TRUSTED_PROXY_COUNT="1")
    url = server.url
    attacker, customer = "203.0.113.7", "198.51.100.2"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(url, junk_key(), address=attacker), range(200)))
    codes = [a.status_code for a in answers]
    assert set(codes) == {401, 429}
    # 50 a minute (the burst may straddle two minutes), and one more per process at most.
    assert 50 <= codes.count(401) <= 2 * 50 + 2, codes
    limited = next(a for a in answers if a.status_code == 429)
    assert_stable_error(limited.json(), code="rate_limit_exceeded")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # A malformed key and no key at all are refused without a row too.
    assert chat(url, "not-a-key", address=customer).status_code == 401
    assert requests.post(f"{url}/v1/chat/completions", json={}, timeout=10).status_code == 401

    # The limit is the attacker's address, not the server's: a customer still gets through.
    assert chat(url, tenant.secret, address=customer).status_code == 200
    for _ in range(60):  # blocked still (or again, should a new minute have begun)
        if chat(url, junk_key(), address=attacker).status_code == 429:
            break
    assert chat(url, tenant.secret, address=attacker).status_code == 429
    time.sleep(0.5)
    assert list(RequestLog.objects.values_list("status_code", flat=True)) == [200]


def raw_request(url: str, head: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=15)
    sock.sendall(head.encode())
    return sock


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def test_a_body_that_never_arrives_ends_in_408_and_others_are_still_served(simulators, gateway):
    (sim,) = simulators(1)
    seeding.catalog(router_urls=[sim.url])
    tenant = seeding.tenant()
    server = gateway(BODY_READ_TIMEOUT_SECONDS="1", BODY_MIN_BYTES_PER_SECOND="100000")
    url = server.url
    host = urlsplit(url).netloc

    # A junk key is refused before the body is awaited: at once.
    started = time.monotonic()
    sock = raw_request(
        url,
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer nope\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    status, _ = read_status(sock)
    sock.close()
    assert status == 401
    assert time.monotonic() - started < 1

    # A real key with a body that never comes: 408 at the deadline, connection closed.
    stalled = [
        raw_request(
            url,
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {tenant.secret}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{",
        )
        for _ in range(25)
    ]
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200  # meanwhile
    started = time.monotonic()
    for sock in stalled:
        status, head = read_status(sock)
        assert status == 408, head
        rest = b""
        while chunk := sock.recv(65536):  # the answer, then the server closes the connection
            rest += chunk
        sock.close()
    assert time.monotonic() - started < 5
    assert chat(url, tenant.secret).status_code == 200
