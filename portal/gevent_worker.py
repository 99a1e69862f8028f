"""gunicorn's gevent worker, with the requests its HTTP parser refuses answered in the
stable error shape (portal/gunicorn.py's `worker_class`).

gunicorn refuses what could smuggle a request past a proxy before the application sees
it: a duplicate or conflicting `Content-Length` ("5" twice, "5" and "7", "5, 7"), one
beside `Transfer-Encoding`, a Transfer-Encoding that does not end in chunked, bad chunk
sizes, malformed request lines and headers. It answers 400 (414, 431, 501) with an HTML
page and closes the connection; here the answer is JSON like every other error,

    {"error": {"message", "type": "invalid_request_error", "param": null,
               "code": "invalid_request_error"}}

with an `x-request-id`, and still closes the connection: the rest of the bytes cannot be
trusted to frame a next request.

Like portal/gunicorn.py, nothing here may import Django: gunicorn's master loads the
worker class before a worker patches the standard library.
"""

from __future__ import annotations

import json
import secrets
import string

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

_ALPHABET = string.digits + string.ascii_letters  # the request id's, as portal.middleware's


def _request_id() -> str:
    return "req_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error` (an HTML page), as a JSON error body."""
    client = status_int < 500
    body = json.dumps(
        {
            "error": {
                "message": f"{reason}: {mesg}" if mesg else reason,
                "type": "invalid_request_error" if client else "api_error",
                "param": None,
                "code": "invalid_request_error" if client else "internal_error",
            }
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-request-id: {_request_id()}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class GeventWorker(_GeventWorker):
    """The stock gevent worker; its refusals (`handle_error` writes them through
    `gunicorn.util.write_error`) go out as JSON."""

    def init_process(self):
        util.write_error = write_error  # this worker process only: after the fork
        super().init_process()
