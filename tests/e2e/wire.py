"""What the gateway puts on the wire: server-sent events and the stable error body."""

from __future__ import annotations

import json
import time

import requests

REQUEST_ID = r"req_[0-9A-Za-z]{24}"


def sse_events(lines) -> list[tuple[str | None, str]]:
    """(event name, data) pairs from decoded SSE lines; comments are skipped."""
    events, name, data = [], None, []
    for line in lines:
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    if data:
        events.append((name, "\n".join(data)))
    return events


def stream_payloads(response: requests.Response) -> list:
    """The JSON data of every event of a streamed response, "[DONE]" as the string."""
    lines = response.iter_lines(decode_unicode=True)
    return [data if data == "[DONE]" else json.loads(data) for _, data in sse_events(lines)]


def assert_stable_error(body: dict, *, code: str, param: str | None = None) -> dict:
    """`{"error": {"message", "type", "param", "code"}}` and nothing else; returns the inner error."""
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if param is not None:
        assert error["param"] == param, error
    return error


def eventually(check, *, timeout: float = 5.0, interval: float = 0.05):
    """`check()`'s first truthy result; a stream's durable write lands just after its last byte."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
