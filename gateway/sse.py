"""Server-sent event framing: compact JSON, UTF-8, one event per call."""

from __future__ import annotations

import json

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment; clients skip it, proxies see traffic

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_compact_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _json_bytes(obj) -> bytes:
    text = _compact(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from a router's "\ud800" escape) has no UTF-8 form;
        # ASCII-escaped JSON still carries it losslessly.
        return _compact_ascii(obj).encode("ascii")


def data_event(obj) -> bytes:
    """`data: {json}\\n\\n` (OpenAI streams)."""
    return b"data: " + _json_bytes(obj) + b"\n\n"


def named_event(event: str, obj) -> bytes:
    """`event: name\\ndata: {json}\\n\\n` (Anthropic streams)."""
    return b"event: " + event.encode("ascii") + b"\ndata: " + _json_bytes(obj) + b"\n\n"
