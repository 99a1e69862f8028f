"""Just enough HTTP/1.1 for the simulator: request heads, Content-Length bodies, keep-alive,
and chunked response bodies for streams.

Hand-written rather than a framework so one core serves thousands of requests a second and
an idle stream costs one coroutine.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
LAST_CHUNK = b"0\r\n\r\n"


class BadRequest(Exception):
    """The request cannot be read; answered with `status`, then the connection closes."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names
    body: bytes
    keep_alive: bool
    received_at: float  # time.perf_counter() when the head arrived


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """The next request on the connection, or None once the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    received_at = time.perf_counter()

    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()

    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection

    if "transfer-encoding" in headers:
        raise BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    body = b""
    length = headers.get("content-length", "")
    if length:
        if not length.isdigit():
            raise BadRequest(400, "invalid Content-Length")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(size)

    return Request(
        method=method,
        path=target.split("?", 1)[0],
        headers=headers,
        body=body,
        keep_alive=keep_alive,
        received_at=received_at,
    )


def json_dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: str = "application/json",
    extra_headers: str = "",
) -> bytes:
    """A whole response: status line, headers and a Content-Length body."""
    connection = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{connection}{extra_headers}\r\n"
    )
    return b"".join((_status_line(status), head.encode(), body))


def json_response(status: int, payload: Any, *, keep_alive: bool, extra_headers: str = "") -> bytes:
    return response(status, json_dumps(payload), keep_alive=keep_alive, extra_headers=extra_headers)


def stream_head(*, keep_alive: bool) -> bytes:
    """Headers of a server-sent-events answer whose body follows in chunks."""
    return _status_line(200) + (
        b"Content-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n"
        + (b"" if keep_alive else b"Connection: close\r\n")
        + b"\r\n"
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = (
            f"HTTP/1.1 {status} {phrase}\r\nServer: cortensor-router-sim\r\n".encode()
        )
    return line
