"""First-byte deadlines of whole (non-stream) answers, and the health probe's one-token
completion, against the simulator and a hand-written router that stalls where told.
(`simulator` and `client` are tests/pools/conftest.py's.)"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests

from pools.catalog import RouteEntry, RouterEntry
from pools.client import PROBE_REFERENCE, RouterClient, RouterError

ANSWER = (
    b'{"id":"c1","object":"text_completion","created":1,"model":"m",'
    b'"choices":[{"index":0,"text":"hi","finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


@pytest.fixture
def stalling_router():
    """`stalling_router(head_after, body_after) -> base_url`: answers every request with a
    whole completion, sending its headers after `head_after` s and its body `body_after` s later."""
    servers = []

    def start(head_after: float, body_after: float) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def serve_one(conn: socket.socket) -> None:
            with conn, contextlib.suppress(OSError):  # OSError: the client gave up
                conn.recv(65536)
                time.sleep(head_after)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(ANSWER)
                )
                time.sleep(body_after)
                conn.sendall(ANSWER)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in servers:
        listener.close()


def router_at(url: str) -> RouterEntry:
    return RouterEntry(id=1, name="r1", base_url=url, api_key="", weight=1)


def route_for(*, api_style: str = "cortensor", session_in_path: bool = False) -> RouteEntry:
    return RouteEntry(
        id=1,
        pool_id=1,
        pool_name="p",
        pool_status="active",
        session_id=7,
        session_in_path=session_in_path,
        template="chatml",
        api_style=api_style,
        priority=100,
        routers=(),
    )


def complete(client: RouterClient, url: str, **route) -> dict:
    return client.complete(
        router=router_at(url),
        route=route_for(**route),
        body={"prompt": "User: hi\nAssistant:", "max_tokens": 8},
        request_id="req_1",
    )


# --- whole answers ---------------------------------------------------------------------------


def test_no_answer_by_the_non_stream_deadline_is_a_retryable_timeout(simulator, client, settings):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 0.3
    settings.ROUTER_READ_TIMEOUT = 10.0  # not what bounds the wait any more
    url = simulator(latency_ms=3000)

    started = time.monotonic()
    with pytest.raises(RouterError) as caught:
        complete(client, url)

    assert time.monotonic() - started < 1.5
    assert (caught.value.kind, caught.value.retryable, caught.value.after_first_byte) == (
        "timeout",
        True,
        False,
    )


def test_the_non_stream_deadline_applies_to_openai_style_routes_too(
    stalling_router, client, settings
):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 0.3
    settings.ROUTER_READ_TIMEOUT = 10.0
    url = stalling_router(head_after=3.0, body_after=0.0)

    started = time.monotonic()
    with pytest.raises(RouterError) as caught:
        client.chat(
            router=router_at(url),
            route=route_for(api_style="openai"),
            body={"messages": [{"role": "user", "content": "hi"}]},
            request_id="req_1",
            stream=False,
        )

    assert time.monotonic() - started < 1.5
    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)


def test_an_answer_within_the_deadline_is_returned(simulator, client, settings):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 1.0
    url = simulator(latency_ms=200)

    assert complete(client, url)["choices"][0]["text"]


def test_after_the_headers_the_body_reads_under_the_read_timeout(stalling_router, client, settings):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 0.3
    settings.ROUTER_READ_TIMEOUT = 3.0
    url = stalling_router(head_after=0.0, body_after=0.8)  # slower than the deadline: fine

    assert complete(client, url)["choices"][0]["text"] == "hi"


def test_a_body_that_stalls_past_the_read_timeout_is_a_retryable_timeout(
    stalling_router, client, settings
):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 2.0
    settings.ROUTER_READ_TIMEOUT = 0.3
    url = stalling_router(head_after=0.0, body_after=2.0)

    with pytest.raises(RouterError) as caught:
        complete(client, url)

    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)


def test_the_non_stream_deadline_is_at_most_the_read_timeout(stalling_router, client, settings):
    settings.ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = 60.0
    settings.ROUTER_READ_TIMEOUT = 0.3
    url = stalling_router(head_after=2.0, body_after=0.0)

    started = time.monotonic()
    with pytest.raises(RouterError) as caught:
        complete(client, url)

    assert time.monotonic() - started < 1.5
    assert caught.value.kind == "timeout"


# --- the probe's one-token completion --------------------------------------------------------


def test_the_completion_probe_asks_for_one_token_on_the_routes_session(simulator, client):
    url = simulator()

    outcome, ms = client.probe_completion(router_at(url), route_for(), limit=2.0)

    assert outcome == "ok" and 0 <= ms < 2000
    sent = requests.get(url + "/_sim/stats", timeout=5).json()["recent_completions"][-1]
    assert sent["body"]["max_tokens"] == 1 and sent["body"]["session_id"] == 7
    assert sent["body"]["stream"] is False
    assert sent["body"]["client_reference"] == PROBE_REFERENCE


def test_a_router_with_no_first_byte_within_the_limit_is_slow(simulator, client):
    url = simulator(latency_ms=3000)

    started = time.monotonic()
    outcome, ms = client.probe_completion(router_at(url), route_for(), limit=0.3)

    assert time.monotonic() - started < 1.5
    assert (outcome, ms) == ("slow", 300)


def test_a_router_that_fails_completions_fails_the_probe(simulator, client):
    url = simulator(failure_rate=1.0)
    assert client.probe_completion(router_at(url), route_for(), limit=2.0)[0] == "fail"
    wrong_session = simulator(sessions=[99])  # 404: this router cannot serve the route
    assert client.probe_completion(router_at(wrong_session), route_for(), limit=2.0)[0] == "fail"


def test_a_router_that_cannot_be_reached_fails_the_probe(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome, _ = client.probe_completion(
        router_at(f"http://127.0.0.1:{port}"), route_for(), limit=1.0
    )
    assert outcome == "fail"


def test_the_completion_probe_speaks_each_routes_style(simulator, stalling_router, client):
    in_path = simulator(sessions=[7])
    assert (
        client.probe_completion(router_at(in_path), route_for(session_in_path=True), limit=2.0)[0]
        == "ok"
    )
    assert (
        requests.get(in_path + "/_sim/stats", timeout=5).json()["recent_completions"][-1]["path"]
        == "/api/v1/completions/7"
    )
    openai_style = stalling_router(head_after=0.0, body_after=0.0)
    route = route_for(api_style="openai")
    assert client.probe_completion(router_at(openai_style), route, limit=2.0)[0] == "ok"
