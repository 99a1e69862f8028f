"""Request ids (every response carries `x-request-id`, `req_…`) and body deadlines."""

import contextlib
import secrets
import socket
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from portal.errors import PortalError, json_error_response
from portal.logs import current_request_id

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# Random bytes below 248 (4 x 62) map uniformly onto the alphabet; the other 8 values are
# dropped. One `token_bytes` call instead of 24 `secrets.choice` calls.
_TO_ALPHABET = bytes(_ALPHABET.encode()[b % 62] for b in range(248)) + bytes(range(248, 256))
_DROPPED = bytes(range(248, 256))


def new_request_id() -> str:
    """`req_` + 24 base62 characters (about 143 bits)."""
    chars = b""
    while len(chars) < 24:
        chars += secrets.token_bytes(32).translate(_TO_ALPHABET, _DROPPED)
    return "req_" + chars[:24].decode()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id()
        token = current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["x-request-id"] = request.request_id
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig):
            return json_error_response("request_too_large")
        if isinstance(exception, BodyTimeout):
            return json_error_response("request_timeout")
        return None


class BodyTimeout(PortalError):
    """The body did not arrive by its deadline (408 request_timeout)."""

    def __init__(self):
        super().__init__("request_timeout")


class _DeadlineStream:
    """The request's body stream, read against a deadline: each read may wait only for
    what is left of it (gevent's Timeout, so only in a gevent-patched process)."""

    def __init__(self, stream, deadline: float, timeout_class):
        self._stream = stream
        self._deadline = deadline
        self._timeout_class = timeout_class

    def _call(self, method, *args):
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout()
        timeout = self._timeout_class(left, BodyTimeout)
        timeout.start()
        try:
            return method(*args)
        finally:
            timeout.close()

    def read(self, *args):
        return self._call(self._stream.read, *args)

    def readline(self, *args):
        return self._call(self._stream.readline, *args)

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self):
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _gevent_timeout():
    try:
        from gevent import Timeout, monkey
    except ImportError:
        return None
    return Timeout if monkey.is_module_patched("socket") else None


class BodyDeadlineMiddleware:
    """A body must arrive within BODY_READ_TIMEOUT_SECONDS plus its length at
    BODY_MIN_BYTES_PER_SECOND, or the request ends with 408 `request_timeout` and the
    connection is closed: a client that sends headers and then trickles (or never sends)
    its body holds a connection for seconds, not forever. Nothing is read here: the body
    is still read when the view asks for it (the gateway checks the key's shape first).

    Under gunicorn's gevent worker (production); Django's development server has no
    deadline (its threads block on the socket)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.timeout_class = _gevent_timeout()

    def __call__(self, request):
        if self.timeout_class is not None and request.META.get("CONTENT_LENGTH") not in (
            None,
            "",
            "0",
        ):
            try:
                length = max(int(request.META["CONTENT_LENGTH"]), 0)
            except ValueError:
                length = 0
            seconds = (
                settings.BODY_READ_TIMEOUT_SECONDS + length / settings.BODY_MIN_BYTES_PER_SECOND
            )
            request._stream = _DeadlineStream(
                request._stream, time.monotonic() + seconds, self.timeout_class
            )
        response = self.get_response(request)
        if response.status_code == 408:
            # The rest of the body may still be on its way: the connection ends after this
            # answer. gunicorn ignores an application's Connection header, so its reading
            # side is shut: the server sees the end of the stream instead of waiting again.
            response["Connection"] = "close"
            sock = request.META.get("gunicorn.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
        return response
