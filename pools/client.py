"""The Cortensor router HTTP client: pooled connections per process (pools/routerhttp.py,
geventhttpclient), hard timeouts, and one error type that says whether another router may
be tried.

    client = RouterClient()
    answer = client.complete(router=router, route=route, body=body, request_id=rid)
    for chunk in client.stream(router=router, route=route, body=body, request_id=rid):
        ...

Settings (read on every call, with defaults): ROUTER_CONNECT_TIMEOUT (2 s),
ROUTER_READ_TIMEOUT (120 s; per read, so per chunk for streams),
ROUTER_FIRST_BYTE_TIMEOUT (30 s until a stream's first event),
ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT (60 s until a whole answer's status line, at most
ROUTER_READ_TIMEOUT: a router answers a non-stream call only once it has generated it
all; the body then reads under ROUTER_READ_TIMEOUT), ROUTER_PROBE_TIMEOUT
(2 s), ROUTER_POOL_MAXSIZE (connections per router and process, idle or in use: a call beyond
them waits), ROUTER_POOL_HOSTS (64 routers kept pooled), ROUTER_TRUST_ENV (False: ignore
HTTP(S)_PROXY).

A timeout before the first byte is a retryable RouterError (kind "timeout"): the gateway
fails over to another router and counts it against the router's breaker.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from pools import routerhttp
from pools.catalog import RouteEntry, RouterEntry
from pools.routererrors import (  # noqa: F401  (RouterError is part of this module's API)
    ERROR_BODY_BYTES,
    RETRYABLE_4XX,
    RouterError,
    _exception_error,
    _protocol_error,
    _status_error,
)
from pools.sse import SSEDecoder, SSEError

PROBE_REFERENCE = "health-probe"  # the probe's client_reference and X-Request-Id
# What a call can raise once sent: the connection broke or timed out (OSError), or the
# answer is not HTTP or ends early (geventhttpclient's HTTPParseError is an HTTPException).
_READ_FAILURES = (OSError, http.client.HTTPException)

# --- the process-wide pools --------------------------------------------------------------

_pools_lock = threading.Lock()
_pools: routerhttp.RouterPools | None = None


def get_pools() -> routerhttp.RouterPools:
    """The router connection pools of this process (made on first use, after settings)."""
    global _pools
    if _pools is None:
        with _pools_lock:
            if _pools is None:
                _pools = make_pools()
    return _pools


def make_pools() -> routerhttp.RouterPools:
    return routerhttp.RouterPools(
        size=_setting("ROUTER_POOL_MAXSIZE", 256),
        hosts=_setting("ROUTER_POOL_HOSTS", 64),
        trust_env=_setting("ROUTER_TRUST_ENV", False),
    )


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- the client ------------------------------------------------------------------------


class RouterClient:
    def __init__(self, pools: routerhttp.RouterPools | None = None):
        self._pools = pools

    @property
    def pools(self) -> routerhttp.RouterPools:
        return self._pools or get_pools()

    def complete(
        self, *, router: RouterEntry, route: RouteEntry, body: dict, request_id: str
    ) -> dict:
        """A whole text completion from `POST /api/v1/completions`."""
        path, payload = _completions_call(route, body, request_id, stream=False)
        return self._post_json(router, path, payload, request_id, require_choices=True)

    def stream(
        self, *, router: RouterEntry, route: RouteEntry, body: dict, request_id: str
    ) -> Iterator[dict]:
        """Completion chunks as they arrive; close the iterator to drop the connection."""
        path, payload = _completions_call(route, body, request_id, stream=True)
        return self._post_stream(router, path, payload, request_id)

    def chat(
        self,
        *,
        router: RouterEntry,
        route: RouteEntry,
        body: dict,
        request_id: str,
        stream: bool,
    ) -> dict | Iterator[dict]:
        """For OpenAI-style routes: the OpenAI chat body passes through as given."""
        payload = {**body, "stream": stream}
        if stream:
            return self._post_stream(router, "/v1/chat/completions", payload, request_id)
        return self._post_json(
            router, "/v1/chat/completions", payload, request_id, require_choices=True
        )

    def probe(self, router: RouterEntry) -> tuple[bool, float]:
        """`GET /api/v1/status`: (up, latency in ms), with short timeouts."""
        limit = _setting("ROUTER_PROBE_TIMEOUT", 2.0)
        started = time.perf_counter()
        try:
            response = routerhttp.get(
                self.pools, router.base_url, "/api/v1/status", _auth(router), timeout=limit
            )
            try:
                response.read()  # so the connection goes back to the pool
                ok = response.status_code == 200
            finally:
                response.release()
        except _READ_FAILURES:
            ok = False
        return ok, (time.perf_counter() - started) * 1000

    def probe_completion(
        self, router: RouterEntry, route: RouteEntry, *, limit: float
    ) -> tuple[str, float]:
        """A one-token completion on `route`'s session: (outcome, ms to its first byte).

        outcome: "ok" (answered within `limit` seconds; a 4xx that is the request's fault
        counts too: the router answered), "slow" (no first byte within `limit`; the ms are
        the limit) or "fail" (cannot connect, 5xx, or a status that says the router cannot
        serve the session).
        """
        if route.api_style == "openai":
            path = "/v1/chat/completions"
            payload = {"messages": [{"role": "user", "content": "ping"}], "stream": False}
        else:
            path, payload = _completions_call(
                route, {"prompt": "ping"}, PROBE_REFERENCE, stream=False
            )
            payload["timeout"] = max(1, math.ceil(limit))
        payload["max_tokens"] = 1
        started = time.perf_counter()
        try:
            response = self._post(
                router,
                path,
                payload,
                PROBE_REFERENCE,
                stream=False,
                first_byte=limit,
                connect=min(limit, _setting("ROUTER_CONNECT_TIMEOUT", 2.0)),
            )
        except _READ_FAILURES as exc:
            kind = _exception_error(exc, router, served=False).kind
            return ("slow", limit * 1000) if kind == "timeout" else ("fail", 0.0)
        elapsed = (time.perf_counter() - started) * 1000
        try:
            with contextlib.suppress(*_READ_FAILURES):
                routerhttp.set_read_timeout(response, limit)
                response.read()  # read, so the connection goes back to the pool
            status = response.status_code
        finally:
            response.release()
        if status >= 300 and _status_error(status, b"", router).retryable:
            return "fail", elapsed
        return "ok", elapsed

    # --- internals -----------------------------------------------------------------

    def _post(
        self,
        router: RouterEntry,
        path: str,
        payload: dict,
        request_id: str,
        *,
        stream: bool,
        first_byte: float,
        connect: float | None = None,
    ) -> routerhttp.Response:
        """Returns once the status line and headers are in: the first-byte deadline."""
        return routerhttp.post(
            self.pools,
            router.base_url,
            path,
            _encode(payload),
            _headers(router, request_id=request_id, stream=stream),
            connect_timeout=_setting("ROUTER_CONNECT_TIMEOUT", 2.0) if connect is None else connect,
            first_byte_timeout=first_byte,
        )

    def _post_json(
        self,
        router: RouterEntry,
        path: str,
        payload: dict,
        request_id: str,
        *,
        require_choices: bool,
    ) -> dict:
        read_timeout = _setting("ROUTER_READ_TIMEOUT", 120.0)
        first_byte = min(_setting("ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT", 60.0), read_timeout)
        try:
            response = self._post(
                router, path, payload, request_id, stream=False, first_byte=first_byte
            )
        except _READ_FAILURES as exc:
            raise _exception_error(exc, router, served=False) from None
        try:
            routerhttp.set_read_timeout(response, read_timeout)  # the body reads per read
            try:
                content = response.read()
            except _READ_FAILURES as exc:
                raise _exception_error(exc, router, served=False) from None
            if not 200 <= response.status_code < 300:
                raise _status_error(response.status_code, content, router)
        finally:
            response.release()
        try:
            data = json.loads(content)
        except ValueError:
            raise _protocol_error("answer is not JSON", router, served=False) from None
        if require_choices and not _has_choices(data):
            raise _protocol_error("answer has no choices", router, served=False)
        return data

    def _post_stream(
        self, router: RouterEntry, path: str, payload: dict, request_id: str
    ) -> Iterator[dict]:
        """A generator: nothing is sent until the first `next()`."""
        first_byte = _setting("ROUTER_FIRST_BYTE_TIMEOUT", 30.0)
        read_timeout = _setting("ROUTER_READ_TIMEOUT", 120.0)
        deadline = time.monotonic() + first_byte
        try:
            response = self._post(
                router, path, payload, request_id, stream=True, first_byte=first_byte
            )
        except _READ_FAILURES as exc:
            raise _exception_error(exc, router, served=False) from None

        served = False
        try:
            if not 200 <= response.status_code < 300:
                raise _status_error(response.status_code, _read_some(response), router)
            if routerhttp.content_type(response).startswith("application/json"):
                # The router ignored `stream`: its whole answer is the one chunk.
                yield _whole_answer_as_chunk(response, router)
                return
            decoder = SSEDecoder()
            while True:
                if not served:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RouterError(
                            "timeout",
                            retryable=True,
                            detail="no event before the first-byte timeout",
                            router_id=router.id,
                        )
                    routerhttp.set_read_timeout(response, remaining)
                try:
                    data = _read_line(response)
                    events = decoder.feed(data) if data else decoder.flush()
                except _READ_FAILURES as exc:
                    raise _exception_error(exc, router, served=served) from None
                except SSEError as exc:
                    raise _protocol_error(str(exc), router, served=served) from None
                for event, value in events:
                    if value == b"[DONE]":
                        _release(response)
                        return
                    chunk = _parse_event(event, value, router, served=served)
                    if not served:
                        served = True
                        routerhttp.set_read_timeout(response, read_timeout)
                    yield chunk
                if not data:
                    raise _protocol_error("stream ended without [DONE]", router, served=served)
        finally:
            response.release()


# --- helpers -----------------------------------------------------------------------------


def _completions_call(
    route: RouteEntry, body: dict, request_id: str, *, stream: bool
) -> tuple[str, dict]:
    payload = {**body, "stream": stream, "client_reference": request_id}
    if route.session_in_path:
        payload.pop("session_id", None)
        return f"/api/v1/completions/{route.session_id}", payload
    payload["session_id"] = route.session_id
    return "/api/v1/completions", payload


def _auth(router: RouterEntry) -> dict[str, str]:
    return {"Authorization": f"Bearer {router.api_key}"} if router.api_key else {}


def _headers(router: RouterEntry, *, request_id: str, stream: bool) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "X-Request-Id": request_id,
        **_auth(router),
    }


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _has_choices(data: Any) -> bool:
    return (
        isinstance(data, dict) and isinstance(data.get("choices"), list) and bool(data["choices"])
    )


def _parse_event(event: str, value: bytes, router: RouterEntry, *, served: bool) -> dict:
    try:
        chunk = json.loads(value)
    except ValueError:
        raise _protocol_error("event data is not JSON", router, served=served) from None
    if not isinstance(chunk, dict):
        raise _protocol_error("event data is not an object", router, served=served)
    if event == "error" or ("error" in chunk and "choices" not in chunk):
        raise _protocol_error(f"error event: {value[:300]!r}", router, served=served)
    return chunk


def _read_line(response: routerhttp.Response) -> bytes:
    """The next line of the body as it arrives (an SSE event is a few lines); at the end,
    what is left without a line break, then b""."""
    return response.readline(b"\n") or response.read()


def _whole_answer_as_chunk(response: routerhttp.Response, router: RouterEntry) -> dict:
    try:
        data = json.loads(response.read())
    except _READ_FAILURES as exc:
        raise _exception_error(exc, router, served=False) from None
    except ValueError:
        raise _protocol_error("answer is not JSON", router, served=False) from None
    if not _has_choices(data):
        raise _protocol_error("answer has no choices", router, served=False)
    return data


def _read_some(response: routerhttp.Response) -> bytes:
    try:
        return response.read(ERROR_BODY_BYTES)
    except _READ_FAILURES:  # the status is what matters; the body is only for the log
        return b""


def _release(response: routerhttp.Response) -> None:
    """After [DONE]: read the end of the body so the connection goes back to the pool;
    a router that keeps talking loses its connection instead (release closes it)."""
    with contextlib.suppress(*_READ_FAILURES):
        routerhttp.set_read_timeout(response, 1.0)
        for _ in range(4):
            if not _read_line(response):
                return
