"""What goes over the wire to and from a live gateway: a chat request, server-sent events,
request ids, waiting for a durable write. (Error bodies: tests/support/errors.py.)"""

from __future__ import annotations

import json
import time

import requests

from tests.factories.pools import MODEL

REQUEST_ID = r"req_[0-9A-Za-z]{24}"
CHAT_MESSAGES = [{"role": "user", "content": "Am I within my limits?"}]


def chat(server, secret: str, **body) -> requests.Response:
    """A small chat completion (`CHAT_MESSAGES`, 4 tokens at most) to the gateway `server`."""
    return requests.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": CHAT_MESSAGES, "max_tokens": 4, **body},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


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


def eventually(check, *, timeout: float = 5.0, interval: float = 0.05):
    """`check()`'s first truthy result; a stream's durable write lands just after its last byte."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
