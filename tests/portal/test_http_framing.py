"""Request framing a proxy could read differently (issue 15): a duplicate or conflicting
`Content-Length` is refused with 400 in the stable error shape and the connection closed,
by the production server (portal/gunicorn.py and its worker, portal/gevent_worker.py)
before the application reads a byte; a well-framed request still gets through."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from tests.support.errors import assert_stable_error
from tests.support.processes import Process, base_env, free_port

FRAMINGS = {
    "the same length twice": ["Content-Length: 2", "Content-Length: 2"],
    "two lengths": ["Content-Length: 2", "Content-Length: 40"],
    "two lengths in one header": ["Content-Length: 2, 40"],
    "a length beside chunked": ["Content-Length: 2", "Transfer-Encoding: chunked"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gunicorn")
    tmp = tmp_path_factory.mktemp("framing")
    port = free_port()
    process = Process(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "-c", "portal/gunicorn.py", "portal.wsgi:application"],
        base_env(
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_WORKERS="1",
            WEB_ACCESS_LOG="",
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
            DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        ),
        tmp / "gunicorn.log",
        r"Booting worker with pid",
    )
    process.wait_for_line()
    yield ("127.0.0.1", port), process
    process.stop()


def exchange(address, head: str, body: bytes = b"{}") -> tuple[str, dict, bytes]:
    """Send one raw request; (status line, headers, body) of the answer, read to the close."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    raw_head, _, content = data.partition(b"\r\n\r\n")
    status, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)
    }
    return status, headers, content


def request_head(*framing: str) -> str:
    return "\r\n".join(
        [
            "POST /v1/chat/completions HTTP/1.1",
            "Host: localhost",
            "Content-Type: application/json",
            "Authorization: Bearer ctr_live_not-a-key",
            *framing,
        ]
    )


@pytest.mark.parametrize("framing", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_ambiguous_framing_is_400_in_the_stable_shape_and_closes(server, framing):
    address, _ = server

    status, headers, content = exchange(address, request_head(*framing))

    assert status.startswith("HTTP/1.1 400 "), (status, content)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-request-id"].startswith("req_") and len(headers["x-request-id"]) == 28
    assert int(headers["content-length"]) == len(content)
    error = assert_stable_error(
        json.loads(content), code="invalid_request_error", type_="invalid_request_error", param=None
    )
    assert "CONTENT-LENGTH" in error["message"]


def test_one_length_reaches_the_application(server):
    address, _ = server

    status, headers, content = exchange(
        address, request_head("Content-Length: 2", "Connection: close")
    )

    assert headers["content-type"] == "application/json"
    assert status.startswith("HTTP/1.1 401 "), (status, content)  # the app answered: no such key
    assert json.loads(content)["error"]["code"] == "invalid_api_key"
