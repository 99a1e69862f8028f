"""The router client against the simulator: what it sends, how failures are classified,
and that streamed tokens arrive as the router sends them."""

from __future__ import annotations

import itertools
import socket
import statistics
import time

import pytest
import requests
from geventhttpclient.connectionpool import ConnectionPool

from pools.catalog import RouteEntry, RouterEntry
from pools.client import RouterError
from pools.simulator import start_in_thread
from pools.sse import SSEDecoder

PROMPT = "User: say hello\nAssistant:"
KEY = "rk-very-secret-router-key"


@pytest.fixture
def simulator():
    """`simulator(**knobs) -> base_url`; every simulator started is stopped after the test."""
    stops = []

    def start(**knobs):
        knobs.setdefault("quiet", True)
        url, stop = start_in_thread(**knobs)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


def router_at(base_url: str, *, api_key: str = "") -> RouterEntry:
    return RouterEntry(id=1, name="r1", base_url=base_url, api_key=api_key, weight=1)


def route_for(
    *, session_id: int = 7, session_in_path: bool = False, api_style="cortensor"
) -> RouteEntry:
    return RouteEntry(
        id=1,
        pool_id=1,
        pool_name="gemma4",
        pool_status="active",
        session_id=session_id,
        session_in_path=session_in_path,
        template="chatml",
        api_style=api_style,
        priority=100,
        routers=(),
    )


def body(**extra) -> dict:
    return {"prompt": PROMPT, "max_tokens": 64, "temperature": 0.7, **extra}


def sim_stats(base_url: str) -> dict:
    return requests.get(base_url + "/_sim/stats", timeout=5).json()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_secrets_hidden(error: RouterError, base_url: str) -> None:
    host_port = base_url.split("//", 1)[1]
    for text in (str(error), repr(error)):
        assert KEY not in text
        assert host_port not in text
        assert "/api/v1" not in text
    assert KEY not in error.detail


# --- complete -------------------------------------------------------------------------


def test_complete_returns_the_routers_answer_and_sends_the_session_and_reference(simulator, client):
    url = simulator(completion_tokens=5)

    answer = client.complete(
        router=router_at(url), route=route_for(), body=body(), request_id="req_abc"
    )

    assert answer["object"] == "text_completion"
    assert len(answer["choices"][0]["text"]) == 20  # five 4-character tokens
    assert answer["usage"]["completion_tokens"] == 5
    sent = sim_stats(url)["recent_completions"][-1]
    assert sent["path"] == "/api/v1/completions"
    assert sent["body"]["session_id"] == 7
    assert sent["body"]["client_reference"] == "req_abc"
    assert sent["body"]["stream"] is False
    assert sent["body"]["temperature"] == 0.7
    assert sent["authorization_sent"] is False


def test_complete_does_not_change_the_callers_body(simulator, client):
    url = simulator()
    given = body()

    client.complete(router=router_at(url), route=route_for(), body=given, request_id="req_1")

    assert given == body()


def test_session_in_path(simulator, client):
    url = simulator(sessions=[42])

    client.complete(
        router=router_at(url),
        route=route_for(session_id=42, session_in_path=True),
        body=body(session_id=999),
        request_id="req_1",
    )

    sent = sim_stats(url)["recent_completions"][-1]
    assert sent["path"] == "/api/v1/completions/42"
    assert "session_id" not in sent["body"]


def test_router_key_is_sent_as_a_bearer_token(simulator, client):
    url = simulator(require_key=KEY)

    answer = client.complete(
        router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
    )

    assert answer["choices"]
    assert sim_stats(url)["recent_completions"][-1]["authorization_sent"] is True


@pytest.mark.parametrize("api_key", ["", "rk-wrong"])
def test_a_missing_or_wrong_router_key_is_the_routers_fault(simulator, client, api_key):
    url = simulator(require_key=KEY)

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url, api_key=api_key), route=route_for(), body=body(), request_id="r"
        )

    assert (caught.value.kind, caught.value.status, caught.value.retryable) == ("status", 401, True)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_retryable(simulator, client, status):
    url = simulator(failure_rate=1.0, fail_status=status)

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
        )

    error = caught.value
    assert (error.kind, error.status, error.retryable, error.after_first_byte) == (
        "status",
        status,
        True,
        False,
    )
    assert error.router_id == 1
    assert_secrets_hidden(error, url)


def test_a_session_the_router_does_not_serve_is_retryable(simulator, client):
    url = simulator(sessions=[1])

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url), route=route_for(session_id=2), body=body(), request_id="r"
        )

    assert (caught.value.status, caught.value.retryable) == (404, True)


@pytest.mark.parametrize(
    "knobs, extra", [({"failure_rate": 1.0, "fail_status": 400}, {}), ({}, {"max_tokens": -1})]
)
def test_a_bad_request_is_not_retryable(simulator, client, knobs, extra):
    url = simulator(**knobs)

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url, api_key=KEY),
            route=route_for(),
            body=body(**extra),
            request_id="r",
        )

    error = caught.value
    assert (error.kind, error.status, error.retryable) == ("status", 400, False)
    assert_secrets_hidden(error, url)


def test_connection_refused_is_a_retryable_connect_error(client):
    url = closed_port_url()

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
        )

    error = caught.value
    assert (error.kind, error.retryable, error.status) == ("connect", True, None)
    assert_secrets_hidden(error, url)


def test_a_slow_router_is_a_retryable_timeout(simulator, client, settings):
    settings.ROUTER_READ_TIMEOUT = 0.2
    url = simulator(latency_ms=1000)

    started = time.monotonic()
    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
        )

    assert time.monotonic() - started < 0.9
    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)
    assert_secrets_hidden(caught.value, url)


# --- stream ---------------------------------------------------------------------------


def test_stream_yields_each_chunk_and_the_usage(simulator, client):
    url = simulator(completion_tokens=6)

    chunks = list(
        client.stream(router=router_at(url), route=route_for(), body=body(), request_id="req_s")
    )

    assert len(chunks) == 6
    assert all(len(chunk["choices"][0]["text"]) == 4 for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    whole = client.complete(
        router=router_at(url), route=route_for(), body=body(), request_id="req_w"
    )
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == whole["choices"][0]["text"]
    sent = sim_stats(url)["recent_completions"][0]["body"]
    assert (sent["stream"], sent["client_reference"]) == (True, "req_s")


def test_stream_sends_nothing_until_iterated(simulator, client):
    url = simulator()

    chunks = client.stream(router=router_at(url), route=route_for(), body=body(), request_id="r")

    assert sim_stats(url)["completions"] == 0
    next(chunks)
    chunks.close()
    assert sim_stats(url)["completions"] == 1


def test_tokens_arrive_as_the_router_sends_them(simulator, client):
    url = simulator(completion_tokens=10, tokens_per_second=10)

    started = time.monotonic()
    arrivals = [
        time.monotonic() - started
        for _ in client.stream(
            router=router_at(url), route=route_for(), body=body(), request_id="r"
        )
    ]

    assert len(arrivals) == 10
    assert arrivals[0] < 0.3  # the first token is not held back (all ten take ~0.9 s)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert 0.06 < statistics.median(gaps) < 0.16
    assert sum(gap > 0.04 for gap in gaps) >= 8  # not delivered in bursts
    assert 0.8 < arrivals[-1] < 1.5


def test_a_failure_before_the_first_chunk_is_retryable(simulator, client):
    url = simulator(failure_rate=1.0, fail_status=503)

    chunks = client.stream(
        router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
    )
    with pytest.raises(RouterError) as caught:
        next(chunks)

    error = caught.value
    assert (error.kind, error.status, error.retryable, error.after_first_byte) == (
        "status",
        503,
        True,
        False,
    )
    assert_secrets_hidden(error, url)


def test_stream_to_a_closed_port_is_a_retryable_connect_error(client):
    chunks = client.stream(
        router=router_at(closed_port_url()), route=route_for(), body=body(), request_id="r"
    )

    with pytest.raises(RouterError) as caught:
        next(chunks)

    assert (caught.value.kind, caught.value.retryable) == ("connect", True)


def test_a_disconnect_mid_stream_is_not_retryable_and_says_chunks_were_served(simulator, client):
    url = simulator(completion_tokens=10, disconnect_after_tokens=3)
    received = []

    with pytest.raises(RouterError) as caught:
        for chunk in client.stream(
            router=router_at(url, api_key=KEY), route=route_for(), body=body(), request_id="r"
        ):
            received.append(chunk)

    error = caught.value
    assert len(received) == 3
    assert (error.retryable, error.after_first_byte) == (False, True)
    assert_secrets_hidden(error, url)


def test_no_first_event_within_the_first_byte_timeout_is_retryable(simulator, client, settings):
    settings.ROUTER_FIRST_BYTE_TIMEOUT = 0.2
    url = simulator(ttft_ms=1000)

    started = time.monotonic()
    with pytest.raises(RouterError) as caught:
        next(client.stream(router=router_at(url), route=route_for(), body=body(), request_id="r"))

    assert time.monotonic() - started < 0.9
    assert (caught.value.kind, caught.value.retryable, caught.value.after_first_byte) == (
        "timeout",
        True,
        False,
    )


def test_after_the_first_event_the_read_timeout_applies_per_chunk(simulator, client, settings):
    settings.ROUTER_FIRST_BYTE_TIMEOUT = 0.2
    settings.ROUTER_READ_TIMEOUT = 1.0
    url = simulator(completion_tokens=3, tokens_per_second=3)  # 333 ms between chunks

    chunks = list(
        client.stream(router=router_at(url), route=route_for(), body=body(), request_id="r")
    )

    assert len(chunks) == 3


def test_a_stall_after_the_first_event_is_not_retryable(simulator, client, settings):
    settings.ROUTER_READ_TIMEOUT = 0.2
    url = simulator(completion_tokens=3, tokens_per_second=1)
    received = []

    with pytest.raises(RouterError) as caught:
        for chunk in client.stream(
            router=router_at(url), route=route_for(), body=body(), request_id="r"
        ):
            received.append(chunk)

    assert len(received) == 1
    assert (caught.value.kind, caught.value.retryable, caught.value.after_first_byte) == (
        "timeout",
        False,
        True,
    )


def test_closing_the_stream_drops_the_router_connection(simulator, client):
    url = simulator(completion_tokens=50, tokens_per_second=20)

    chunks = client.stream(router=router_at(url), route=route_for(), body=body(), request_id="r")
    next(chunks)
    chunks.close()

    deadline = time.monotonic() + 5
    while sim_stats(url)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = sim_stats(url)
    assert stats["in_flight"] == 0
    assert stats["streams_completed"] == 0


def test_a_finished_stream_returns_its_connection_to_the_pool(simulator, client, monkeypatch):
    url = simulator(completion_tokens=3)
    connects = []
    real_connect = ConnectionPool._create_socket

    def counting_connect(pool):
        connects.append(pool)
        return real_connect(pool)

    monkeypatch.setattr(ConnectionPool, "_create_socket", counting_connect)

    for _ in range(3):
        assert (
            len(
                list(
                    client.stream(
                        router=router_at(url), route=route_for(), body=body(), request_id="r"
                    )
                )
            )
            == 3
        )
    client.complete(router=router_at(url), route=route_for(), body=body(), request_id="r")

    assert len(connects) == 1


# --- probe ----------------------------------------------------------------------------


def test_probe_reports_an_up_router_and_its_latency(simulator, client):
    ok, latency_ms = client.probe(router_at(simulator()))

    assert ok is True
    assert 0 < latency_ms < 1000


def test_probe_reports_a_down_router(client):
    ok, latency_ms = client.probe(router_at(closed_port_url()))

    assert ok is False
    assert latency_ms >= 0


# --- router quirks (mocked HTTP: the simulator always behaves) ---------------------------


def sse_body(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def test_sse_comments_event_names_and_crlf_are_tolerated(mock_router, client):
    mock_router.post(
        "/api/v1/completions",
        body=b': keep-alive\r\n\r\nevent: message\r\ndata: {"choices":[{"text":"a"}]}\r\n\r\n'
        b'id: 2\ndata:{"choices":[{"text":"b"}]}\n\ndata: [DONE]\n\n',
        content_type="text/event-stream",
    )

    chunks = list(
        client.stream(
            router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
        )
    )

    assert [chunk["choices"][0]["text"] for chunk in chunks] == ["a", "b"]


def test_a_stream_that_ends_without_done_is_a_protocol_error_after_the_first_byte(
    mock_router, client
):
    mock_router.post(
        "/api/v1/completions",
        body=sse_body('data: {"choices":[{"text":"a"}]}', ""),
        content_type="text/event-stream",
    )
    received = []

    with pytest.raises(RouterError) as caught:
        for chunk in client.stream(
            router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
        ):
            received.append(chunk)

    assert len(received) == 1
    assert (caught.value.kind, caught.value.after_first_byte, caught.value.retryable) == (
        "protocol",
        True,
        False,
    )


def test_an_empty_stream_is_retryable(mock_router, client):
    mock_router.post("/api/v1/completions", body=b"", content_type="text/event-stream")

    with pytest.raises(RouterError) as caught:
        list(
            client.stream(
                router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
            )
        )

    assert (caught.value.kind, caught.value.retryable, caught.value.after_first_byte) == (
        "protocol",
        True,
        False,
    )


def test_an_error_event_mid_stream_is_a_failure_after_the_first_byte(mock_router, client):
    mock_router.post(
        "/api/v1/completions",
        body=sse_body(
            'data: {"choices":[{"text":"a"}]}', "", 'data: {"error":"boom"}', "", "data: [DONE]"
        ),
        content_type="text/event-stream",
    )

    with pytest.raises(RouterError) as caught:
        list(
            client.stream(
                router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
            )
        )

    assert (caught.value.kind, caught.value.after_first_byte) == ("protocol", True)


def test_invalid_json_in_the_first_event_is_retryable(mock_router, client):
    mock_router.post(
        "/api/v1/completions",
        body=sse_body("data: {nope", "", "data: [DONE]"),
        content_type="text/event-stream",
    )

    with pytest.raises(RouterError) as caught:
        list(
            client.stream(
                router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
            )
        )

    assert (caught.value.kind, caught.value.retryable) == ("protocol", True)


def test_a_router_that_ignores_stream_answers_with_one_chunk(mock_router, client):
    answer = {
        "choices": [{"text": "whole", "finish_reason": "stop"}],
        "usage": {"completion_tokens": 1},
    }
    mock_router.post("/api/v1/completions", json=answer)

    chunks = list(
        client.stream(
            router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
        )
    )

    assert chunks == [answer]


@pytest.mark.parametrize(
    "reply",
    [
        {"body": b"<html>oops</html>", "content_type": "text/html"},
        {"json": {"id": "x", "choices": []}},
        {"json": ["not", "an", "object"]},
    ],
)
def test_an_unreadable_answer_is_a_retryable_protocol_error(mock_router, client, reply):
    mock_router.post("/api/v1/completions", **reply)

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(mock_router.url), route=route_for(), body=body(), request_id="r"
        )

    assert (caught.value.kind, caught.value.retryable) == ("protocol", True)


def test_error_detail_keeps_the_body_for_logs_without_the_key(mock_router, client):
    mock_router.post("/api/v1/completions", status=502, body=f"bad gateway; key={KEY}".encode())

    with pytest.raises(RouterError) as caught:
        client.complete(
            router=router_at(mock_router.url, api_key=KEY),
            route=route_for(),
            body=body(),
            request_id="r",
        )

    assert "bad gateway" in caught.value.detail
    assert KEY not in caught.value.detail
    assert str(caught.value) == "The router answered with an error (HTTP 502)."


def test_openai_style_chat_passes_the_body_through(mock_router, client):
    answer = {
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
    }
    mock_router.post("/v1/chat/completions", json=answer)
    chat_body = {"model": "gemma-4-26b", "messages": [{"role": "user", "content": "hello"}]}

    result = client.chat(
        router=router_at(mock_router.url, api_key=KEY),
        route=route_for(api_style="openai"),
        body=chat_body,
        request_id="r",
        stream=False,
    )

    assert result == answer
    sent = mock_router.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["X-Request-Id"] == "r"
    assert (
        sent.body
        == b'{"model":"gemma-4-26b","messages":[{"role":"user","content":"hello"}],"stream":false}'
    )


def test_openai_style_chat_streams(mock_router, client):
    mock_router.post(
        "/v1/chat/completions",
        body=sse_body(
            'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"hi"}}]}',
            "",
            'data: {"object":"chat.completion.chunk","choices":[],"usage":{"total_tokens":3}}',
            "",
            "data: [DONE]",
            "",
        ),
        content_type="text/event-stream",
    )

    chunks = list(
        client.chat(
            router=router_at(mock_router.url),
            route=route_for(api_style="openai"),
            body={"model": "m", "messages": []},
            request_id="r",
            stream=True,
        )
    )

    assert [chunk["choices"] for chunk in chunks] == [[{"delta": {"content": "hi"}}], []]
    assert chunks[-1]["usage"] == {"total_tokens": 3}


def test_openai_style_chat_errors_are_classified_the_same_way(mock_router, client):
    mock_router.post("/v1/chat/completions", status=400, json={"error": {"message": "bad"}})

    with pytest.raises(RouterError) as caught:
        client.chat(
            router=router_at(mock_router.url),
            route=route_for(api_style="openai"),
            body={},
            request_id="r",
            stream=False,
        )

    assert (caught.value.status, caught.value.retryable) == (400, False)


# --- the SSE decoder ------------------------------------------------------------------


def test_sse_decoder_joins_lines_split_across_reads():
    decoder = SSEDecoder()

    events = decoder.feed(b'data: {"a"') + decoder.feed(b":1}\r") + decoder.feed(b"\n\ndata: [DO")
    events += decoder.feed(b"NE]\n\n")

    assert events == [("message", b'{"a":1}'), ("message", b"[DONE]")]


def test_sse_decoder_names_events_until_the_blank_line():
    decoder = SSEDecoder()

    events = decoder.feed(b"event: error\ndata: x\n\ndata: y\n")

    assert events == [("error", b"x"), ("message", b"y")]


def test_sse_decoder_flushes_an_unterminated_last_line():
    decoder = SSEDecoder()

    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.flush() == [("message", b"[DONE]")]


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_is_not_followed_and_another_router_may_answer(mock_router, client, stream):
    mock_router.post(
        "/api/v1/completions",
        status=302,
        headers={"Location": f"{mock_router.url}/steal"},
    )
    mock_router.post("/steal", json={"choices": [{"text": "should never be asked"}]})

    with pytest.raises(RouterError) as caught:
        call = client.stream if stream else client.complete
        result = call(
            router=router_at(mock_router.url, api_key="rk_secret"),
            route=route_for(),
            body=body(),
            request_id="r",
        )
        if stream:
            list(result)

    assert caught.value.status == 302 and caught.value.retryable
    assert [c.request.url for c in mock_router.calls] == ["/api/v1/completions"]
