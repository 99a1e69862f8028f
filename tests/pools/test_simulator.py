"""The router simulator speaks the router contract (ROUTER_API.md) and obeys its knobs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROMPT = "User: say hello\nAssistant:"  # 27 characters -> 7 prompt tokens


def complete(http, url, path="/api/v1/completions", **body):
    body.setdefault("prompt", PROMPT)
    if not path.rstrip("/").split("/")[-1].isdigit():
        body.setdefault("session_id", 1)
    return http.post(url + path, json=body, timeout=10)


def stream_events(response) -> list:
    """The `data:` payloads of an SSE body, decoded; "[DONE]" stays a string."""
    events = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :]
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


# --- completions -----------------------------------------------------------------


def test_completion_has_the_text_completion_shape_and_consistent_usage(simulator, http):
    url = simulator()

    response = complete(http, url, client_reference="req_1", temperature=0.2, top_k=40)

    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "sim-model"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert len(choice["text"].split()) == 16
    assert len(choice["text"]) == 4 * 16  # every token is a 3-letter word and a space
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23}


def test_the_same_prompt_gets_the_same_text(simulator, http):
    url = simulator()

    first = complete(http, url).json()["choices"][0]["text"]
    again = complete(http, url).json()["choices"][0]["text"]
    other = complete(http, url, prompt="something else entirely").json()["choices"][0]["text"]

    assert first == again
    assert other != first


def test_max_tokens_below_the_answer_length_cuts_it_with_finish_reason_length(simulator, http):
    url = simulator(completion_tokens=16)

    capped = complete(http, url, max_tokens=5).json()
    roomy = complete(http, url, max_tokens=16).json()

    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 5
    assert len(capped["choices"][0]["text"].split()) == 5
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["usage"]["completion_tokens"] == 16


def test_session_may_come_in_the_body_or_the_path(simulator, http):
    url = simulator(sessions=[7, 8])

    assert complete(http, url, session_id=7).status_code == 200
    assert complete(http, url, path="/api/v1/completions/8").status_code == 200
    assert complete(http, url, session_id=9).status_code == 404
    assert complete(http, url, path="/api/v1/completions/9").status_code == 404

    stats = http.get(url + "/_sim/stats").json()
    assert [c["session_id"] for c in stats["recent_completions"]] == [7, 8]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'{"session_id": 1}',  # no prompt
        b'{"session_id": 1, "prompt": 5}',
        b'{"session_id": "1", "prompt": "hi"}',
        b'{"prompt": "hi"}',  # no session anywhere
        b'{"session_id": 1, "prompt": "hi", "max_tokens": "ten"}',
        b'{"session_id": 1, "prompt": "hi", "stream": "yes"}',
    ],
)
def test_malformed_completion_requests_get_400_with_an_error(simulator, http, raw):
    url = simulator()

    response = http.post(url + "/api/v1/completions", data=raw, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"]


def test_non_integer_session_in_the_path_is_400(simulator, http):
    url = simulator()

    assert complete(http, url, path="/api/v1/completions/abc").status_code == 400


def test_omit_usage_drops_usage_from_answers_and_streams(simulator, http):
    url = simulator(omit_usage=True)

    body = complete(http, url).json()
    events = stream_events(complete(http, url, stream=True))

    assert "usage" not in body
    assert all("usage" not in event for event in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_failure_rate_one_answers_every_completion_with_the_fail_status(simulator, http):
    url = simulator(failure_rate=1.0, fail_status=503)

    statuses = [complete(http, url).status_code for _ in range(3)]

    assert statuses == [503, 503, 503]
    assert http.get(url + "/api/v1/status").status_code == 200
    assert http.get(url + "/_sim/stats").json()["failures_injected"] == 3


def test_require_key_needs_the_bearer_key(simulator, http):
    url = simulator(require_key="router-secret")

    missing = complete(http, url)
    wrong = http.post(
        url + "/api/v1/completions",
        json={"session_id": 1, "prompt": "hi"},
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    right = http.post(
        url + "/api/v1/completions",
        json={"session_id": 1, "prompt": "hi"},
        headers={"Authorization": "Bearer router-secret"},
        timeout=10,
    )

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json()["error"]


def test_latency_delays_the_answer(simulator, http):
    url = simulator(latency_ms=150)

    started = time.perf_counter()
    response = complete(http, url)

    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.15


# --- streams ---------------------------------------------------------------------


def test_stream_sends_one_chunk_per_token_then_usage_then_done(simulator, http):
    url = simulator(completion_tokens=6)
    whole = complete(http, url).json()

    response = http.post(
        url + "/api/v1/completions",
        json={"session_id": 1, "prompt": PROMPT, "stream": True},
        stream=True,
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = stream_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) == 6
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


def test_stream_capped_by_max_tokens_ends_with_length(simulator, http):
    url = simulator()

    events = stream_events(complete(http, url, stream=True, max_tokens=2))

    assert len(events) == 3
    assert events[1]["choices"][0]["finish_reason"] == "length"
    assert events[1]["usage"]["completion_tokens"] == 2


def test_stream_is_paced_by_ttft_and_tokens_per_second(simulator, http):
    url = simulator(completion_tokens=5, ttft_ms=100, tokens_per_second=50)

    started = time.perf_counter()
    events = stream_events(complete(http, url, stream=True))

    assert len(events) == 6
    # 100 ms to the first token, then 4 gaps of 20 ms.
    assert time.perf_counter() - started >= 0.17


def test_disconnect_after_tokens_drops_the_stream_before_done(simulator, http):
    url = simulator(disconnect_after_tokens=3)
    response = http.post(
        url + "/api/v1/completions",
        json={"session_id": 1, "prompt": PROMPT, "stream": True},
        stream=True,
    )
    lines = []

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in response.iter_lines():
            lines.append(line)

    data = [line for line in lines if line.startswith(b"data: ")]
    assert len(data) == 3
    assert b"data: [DONE]" not in data
    assert http.get(url + "/_sim/stats").json()["streams_dropped"] == 1


def test_a_client_leaving_mid_stream_is_counted_and_frees_the_slot(simulator, http):
    url = simulator(tokens_per_second=50)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"session_id": 1, "prompt": PROMPT, "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        received = b""
        while b"data: " not in received:
            piece = sock.recv(65536)
            assert piece, "the stream ended before its first token"
            received += piece
    # The socket is closed after the first token, 15 tokens (300 ms) before the end.

    deadline = time.monotonic() + 3
    stats = http.get(url + "/_sim/stats").json()
    while stats["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = http.get(url + "/_sim/stats").json()

    assert stats["streams_abandoned"] == 1
    assert stats["streams_completed"] == 0 and stats["in_flight"] == 0


def test_two_hundred_concurrent_streams_all_finish(simulator):
    url = simulator(ttft_ms=50)

    def one_stream(index):
        body = {"session_id": 1, "prompt": f"prompt {index}", "stream": True}
        with requests.post(url + "/api/v1/completions", json=body, stream=True, timeout=30) as r:
            return r.status_code, stream_events(r)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one_stream, range(200)))
    elapsed = time.perf_counter() - started

    assert all(status == 200 and events[-1] == "[DONE]" for status, events in results)
    assert all(len(events) == 17 for _, events in results)
    stats = requests.get(url + "/_sim/stats", timeout=10).json()
    assert stats["streams_completed"] == 200
    assert stats["max_in_flight"] > 1
    assert elapsed < 5  # one after another would take 200 x 50 ms = 10 s


# --- health, control, HTTP ---------------------------------------------------------


def test_status_and_info_describe_the_router(simulator, http):
    url = simulator(sessions=[3, 1], model_name="gemma-sim")

    status = http.get(url + "/api/v1/status")
    info = http.get(url + "/api/v1/info")

    assert status.status_code == 200 and status.json()["status"] == "ok"
    assert info.status_code == 200
    assert info.json()["version"] == "sim"
    assert info.json()["sessions"] == [1, 3]
    assert info.json()["models"] == ["gemma-sim"]


def test_sim_config_changes_knobs_live(simulator, http):
    url = simulator()
    assert complete(http, url).json()["usage"]["completion_tokens"] == 16

    changed = http.post(url + "/_sim/config", json={"completion_tokens": 3, "model-name": "m2"})
    body = complete(http, url).json()

    assert changed.status_code == 200
    assert changed.json()["config"]["completion_tokens"] == 3
    assert body["usage"]["completion_tokens"] == 3 and body["model"] == "m2"
    assert http.post(url + "/_sim/config", json={"no_such_knob": 1}).status_code == 400
    assert http.post(url + "/_sim/config", json={"failure_rate": 2}).status_code == 400


def test_sim_stats_count_requests_streams_and_references(simulator, http):
    url = simulator()
    complete(http, url, client_reference="req_a")
    complete(http, url, path="/api/v1/completions/5", client_reference="req_b", stream=True)
    http.get(url + "/api/v1/status")

    stats = http.get(url + "/_sim/stats").json()

    assert stats["requests_total"] == 3
    assert stats["by_path"] == {
        "/api/v1/completions": 1,
        "/api/v1/completions/5": 1,
        "/api/v1/status": 1,
    }
    assert stats["by_status"] == {"200": 3}
    assert stats["completions"] == 2
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 1)
    assert stats["client_references"] == ["req_a", "req_b"]
    assert (stats["in_flight"], stats["max_in_flight"]) == (0, 1)

    http.post(url + "/_sim/reset")
    after = http.get(url + "/_sim/stats").json()
    assert after["requests_total"] == 0 and after["client_references"] == []


def test_keep_alive_serves_several_requests_and_connection_close_is_honoured(simulator):
    host, port = simulator().removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        get = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(get + get + last)  # pipelined on one connection
        received = _read_until_closed(sock)

    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.count(b"Connection: close") == 1


def test_chunked_request_bodies_are_refused(simulator):
    host, port = simulator().removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/completions HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        received = _read_until_closed(sock)

    assert received.startswith(b"HTTP/1.1 411 ")


def _read_until_closed(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# --- the management command ----------------------------------------------------------


def test_simulate_router_command_listens_answers_and_stops_on_sigterm():
    command = [sys.executable, "manage.py", "simulate_router", "--port", "0", "--sessions", "1,2"]
    env = {**os.environ, "DEBUG": "true"}
    with subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            line = _first_line(process, timeout=15)
            assert line.startswith("simulate_router listening on http://127.0.0.1:")
            url = line.split(" on ", 1)[1].strip()

            status = requests.get(url + "/api/v1/status", timeout=5)
            info = requests.get(url + "/api/v1/info", timeout=5)

            assert status.status_code == 200 and status.json()["status"] == "ok"
            assert info.json()["sessions"] == [1, 2]
        finally:
            process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def _first_line(process, *, timeout: float) -> str:
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        process.kill()
        pytest.fail(f"no listening line within {timeout} s: {process.stderr.read()}")
    return lines[0]
