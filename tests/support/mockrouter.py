"""A router that answers what a test tells it to, on a real socket, for the router
client's quirk tests (tests/pools/test_client.py): the client speaks HTTP itself
(pools/routerhttp.py), so a mock of a Python HTTP library would not see its calls.

    router = MockRouter()              # the `mock_router` fixture starts and stops one
    router.post("/api/v1/completions", body=b"...", content_type="text/event-stream")
    router.post("/v1/chat/completions", json={...}, status=400)
    ... client calls router.url ...
    router.calls[0].request.url (the path), .headers["Authorization"], .body
"""

from __future__ import annotations

import json as jsonlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MockRouter:
    replies: dict[str, Reply] = field(default_factory=dict)
    calls: list[SimpleNamespace] = field(default_factory=list)

    def __post_init__(self) -> None:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = SimpleNamespace(
                    url=self.path, headers=self.headers, body=self.rfile.read(length)
                )
                router.calls.append(SimpleNamespace(request=request))
                reply = router.replies.get(self.path, Reply(status=404))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def post(
        self,
        path: str,
        *,
        body: bytes = b"",
        json=None,
        status: int = 200,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if json is not None:
            body, content_type = jsonlib.dumps(json).encode(), content_type or "application/json"
        self.replies[path] = Reply(status, body, content_type or "text/plain", headers or {})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
