"""Server-sent events as routers send them: bytes in, `(event, data)` pairs out.

Each `data:` line is one payload (routers send one JSON object per line); comments,
`id:`/`retry:` lines and blank lines carry nothing. An `event:` line names the event
of the data lines that follow it, until the next blank line.
"""

from __future__ import annotations

MAX_LINE_BYTES = 4 * 1024 * 1024


class SSEError(ValueError):
    """The stream is not server-sent events we can read."""


class SSEDecoder:
    """Feed it bytes as they arrive; it hands back the complete `data:` lines so far."""

    __slots__ = ("_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._event = "message"

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        if b"\n" not in data:
            self._pending += data
            if len(self._pending) > MAX_LINE_BYTES:
                raise SSEError("event line too long")
            return []
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            raise SSEError("event line too long")
        return self._parse(lines)

    def flush(self) -> list[tuple[str, bytes]]:
        """Whatever the last, unterminated line held (the stream has ended)."""
        pending, self._pending = self._pending, b""
        return self._parse([pending]) if pending else []

    def _parse(self, lines: list[bytes]) -> list[tuple[str, bytes]]:
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._event = "message"
            elif line.startswith(b"data:"):
                value = line[5:]
                events.append((self._event, value[1:] if value.startswith(b" ") else value))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace") or "message"
            # ":" comments, id:, retry: and unknown fields carry nothing for us
        return events
