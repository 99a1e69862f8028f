"""Router failures: one error type that says whether another router may be tried, and
the classification of HTTP statuses, broken answers and transport exceptions into it.
Details keep the router's words for logs, with its key scrubbed; `str()` is safe to show.
"""

from __future__ import annotations

import socket

from geventhttpclient.response import HTTPConnectionClosed

from pools.catalog import RouterEntry
from pools.routerhttp import ConnectFailed

ERROR_BODY_BYTES = 2048

# 4xx answers that are the router's (or its configuration's) fault rather than the
# request's: a wrong router key, a session this router does not serve, a router
# timeout, rate limiting. Another router may well succeed.
RETRYABLE_4XX = frozenset({401, 403, 404, 408, 429})

_MESSAGES = {
    "connect": "The router could not be reached.",
    "timeout": "The router timed out.",
    "status": "The router answered with an error.",
    "protocol": "The router sent an invalid response.",
}


class RouterError(Exception):
    """A failed router call. `str()` is safe to show; `detail` is for logs only.

    retryable: another router may be tried (nothing reached the customer yet).
    kind: "connect", "timeout", "status" or "protocol".
    after_first_byte: a stream failed after at least one chunk was yielded.
    """

    def __init__(
        self,
        kind: str,
        *,
        retryable: bool,
        status: int | None = None,
        after_first_byte: bool = False,
        detail: str = "",
        router_id: int | None = None,
    ):
        self.kind = kind
        self.retryable = retryable
        self.status = status
        self.after_first_byte = after_first_byte
        self.detail = detail
        self.router_id = router_id
        message = _MESSAGES[kind]
        if status is not None:
            message = f"{message[:-1]} (HTTP {status})."
        super().__init__(message)

    def __repr__(self) -> str:
        return (
            f"RouterError(kind={self.kind!r}, retryable={self.retryable}, status={self.status}, "
            f"after_first_byte={self.after_first_byte}, router_id={self.router_id})"
        )


def _scrub(text: str, router: RouterEntry) -> str:
    if router.api_key:
        text = text.replace(router.api_key, "***")
    return text[:500]


def _status_error(status: int, body: bytes, router: RouterEntry) -> RouterError:
    # 5xx, a rate limit or an unserved session are the router's state; a redirect is its
    # misconfiguration (never followed: the request and its key stay with the router we
    # chose). Another router may answer. Other 4xx are the request's fault.
    retryable = status >= 500 or status in RETRYABLE_4XX or 300 <= status < 400
    return RouterError(
        "status",
        retryable=retryable,
        status=status,
        detail=_scrub(body[:ERROR_BODY_BYTES].decode("utf-8", "replace"), router),
        router_id=router.id,
    )


def _protocol_error(detail: str, router: RouterEntry, *, served: bool) -> RouterError:
    return RouterError(
        "protocol",
        retryable=not served,
        after_first_byte=served,
        detail=_scrub(detail, router),
        router_id=router.id,
    )


def _exception_error(exc: BaseException, router: RouterEntry, *, served: bool) -> RouterError:
    return RouterError(
        _exception_kind(exc),
        retryable=not served,
        after_first_byte=served,
        detail=_scrub(f"{type(exc).__name__}: {exc}", router),
        router_id=router.id,
    )


def _exception_kind(exc: BaseException) -> str:
    """A transport failure of pools/routerhttp.py: could not connect, timed out, the
    connection broke ("connect": nothing says the router saw the request through), or an
    answer that is not HTTP or ends early ("protocol")."""
    if isinstance(exc, ConnectFailed | HTTPConnectionClosed):
        return "connect"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, OSError):
        return "connect"
    return "protocol"
