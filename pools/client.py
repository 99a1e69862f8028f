"""The Cortensor router HTTP client: one pooled `requests.Session` per process, hard
timeouts, and one error type that says whether another router may be tried.

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
(2 s), ROUTER_POOL_MAXSIZE (256 connections per router), ROUTER_POOL_HOSTS (64 routers
kept pooled), ROUTER_TRUST_ENV (False: ignore HTTP(S)_PROXY and .netrc).

A timeout before the first byte is a retryable RouterError (kind "timeout"): the gateway
fails over to another router and counts it against the router's breaker.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions
from django.conf import settings
from requests.adapters import HTTPAdapter

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

READ_SIZE = 64 * 1024
PROBE_REFERENCE = "health-probe"  # the probe's client_reference and X-Request-Id
_READ_FAILURES = (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)

# --- the process-wide session ------------------------------------------------------------

_session_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def get_session() -> requests.Session:
    """The pooled session of this process (rebuilt after a fork: sockets are not shared)."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        with _session_lock:
            if _session is None or _session_pid != os.getpid():
                _session, _session_pid = _make_session(), os.getpid()
    return _session


def _make_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=_setting("ROUTER_POOL_HOSTS", 64),
        pool_maxsize=_setting("ROUTER_POOL_MAXSIZE", 256),
        max_retries=0,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = _setting("ROUTER_TRUST_ENV", False)
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = "cortensor-portal"
    return session


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- the client ------------------------------------------------------------------------


class RouterClient:
    def __init__(self, session: requests.Session | None = None):
        self._session = session

    @property
    def session(self) -> requests.Session:
        return self._session or get_session()

    def complete(
        self, *, router: RouterEntry, route: RouteEntry, body: dict, request_id: str
    ) -> dict:
        """A whole text completion from `POST /api/v1/completions`."""
        url, payload = _completions_call(router, route, body, request_id, stream=False)
        return self._post_json(router, url, payload, request_id, require_choices=True)

    def stream(
        self, *, router: RouterEntry, route: RouteEntry, body: dict, request_id: str
    ) -> Iterator[dict]:
        """Completion chunks as they arrive; close the iterator to drop the connection."""
        url, payload = _completions_call(router, route, body, request_id, stream=True)
        return self._post_stream(router, url, payload, request_id)

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
        url = f"{router.base_url}/v1/chat/completions"
        payload = {**body, "stream": stream}
        if stream:
            return self._post_stream(router, url, payload, request_id)
        return self._post_json(router, url, payload, request_id, require_choices=True)

    def probe(self, router: RouterEntry) -> tuple[bool, float]:
        """`GET /api/v1/status`: (up, latency in ms), with short timeouts."""
        limit = _setting("ROUTER_PROBE_TIMEOUT", 2.0)
        connect = min(limit, _setting("ROUTER_CONNECT_TIMEOUT", 2.0))
        started = time.perf_counter()
        try:
            with self.session.get(
                f"{router.base_url}/api/v1/status",
                headers=_auth(router),
                timeout=(connect, limit),
            ) as response:
                ok = response.status_code == 200
        except requests.RequestException:
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
            url = f"{router.base_url}/v1/chat/completions"
            payload = {"messages": [{"role": "user", "content": "ping"}], "stream": False}
        else:
            url, payload = _completions_call(
                router, route, {"prompt": "ping"}, PROBE_REFERENCE, stream=False
            )
            payload["timeout"] = max(1, math.ceil(limit))
        payload["max_tokens"] = 1
        connect = min(limit, _setting("ROUTER_CONNECT_TIMEOUT", 2.0))
        started = time.perf_counter()
        try:
            response = _post(
                self.session,
                url,
                _encode(payload),
                router=router,
                request_id=PROBE_REFERENCE,
                stream=False,
                timeout=(connect, limit),
            )
        except requests.RequestException as exc:
            kind = _exception_error(exc, router, served=False).kind
            return ("slow", limit * 1000) if kind == "timeout" else ("fail", 0.0)
        elapsed = (time.perf_counter() - started) * 1000
        with response:
            with contextlib.suppress(requests.RequestException, *_READ_FAILURES):
                _set_read_timeout(response.raw, limit)
                _ = response.content  # read, so the connection goes back to the pool
            status = response.status_code
            if status >= 300 and _status_error(status, b"", router).retryable:
                return "fail", elapsed
        return "ok", elapsed

    # --- internals -----------------------------------------------------------------

    def _post_json(
        self,
        router: RouterEntry,
        url: str,
        payload: dict,
        request_id: str,
        *,
        require_choices: bool,
    ) -> dict:
        read_timeout = _setting("ROUTER_READ_TIMEOUT", 120.0)
        first_byte = min(_setting("ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT", 60.0), read_timeout)
        try:
            # Returns once the status line and headers are in: the first-byte deadline.
            response = _post(
                self.session,
                url,
                _encode(payload),
                router=router,
                request_id=request_id,
                stream=False,
                timeout=(_setting("ROUTER_CONNECT_TIMEOUT", 2.0), first_byte),
            )
        except requests.RequestException as exc:
            raise _exception_error(exc, router, served=False) from None
        with response:
            _set_read_timeout(response.raw, read_timeout)  # the body reads per read, as before
            try:
                content = response.content
            except (requests.RequestException, *_READ_FAILURES) as exc:
                raise _exception_error(exc, router, served=False) from None
            if not 200 <= response.status_code < 300:
                raise _status_error(response.status_code, content, router)
            try:
                data = json.loads(content)
            except ValueError:
                raise _protocol_error("answer is not JSON", router, served=False) from None
        if require_choices and not _has_choices(data):
            raise _protocol_error("answer has no choices", router, served=False)
        return data

    def _post_stream(
        self, router: RouterEntry, url: str, payload: dict, request_id: str
    ) -> Iterator[dict]:
        """A generator: nothing is sent until the first `next()`."""
        first_byte = _setting("ROUTER_FIRST_BYTE_TIMEOUT", 30.0)
        read_timeout = _setting("ROUTER_READ_TIMEOUT", 120.0)
        deadline = time.monotonic() + first_byte
        try:
            response = _post(
                self.session,
                url,
                _encode(payload),
                router=router,
                request_id=request_id,
                stream=True,
                timeout=(_setting("ROUTER_CONNECT_TIMEOUT", 2.0), first_byte),
            )
        except requests.RequestException as exc:
            raise _exception_error(exc, router, served=False) from None

        served = False
        try:
            raw = response.raw
            if not 200 <= response.status_code < 300:
                raise _status_error(response.status_code, _read_some(raw), router)
            if response.headers.get("content-type", "").startswith("application/json"):
                # The router ignored `stream`: its whole answer is the one chunk.
                yield _whole_answer_as_chunk(raw, router)
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
                    _set_read_timeout(raw, remaining)
                try:
                    data = raw.read1(READ_SIZE)
                    events = decoder.feed(data) if data else decoder.flush()
                except _READ_FAILURES as exc:
                    raise _exception_error(exc, router, served=served) from None
                except SSEError as exc:
                    raise _protocol_error(str(exc), router, served=served) from None
                for event, value in events:
                    if value == b"[DONE]":
                        _release(raw)
                        return
                    chunk = _parse_event(event, value, router, served=served)
                    if not served:
                        served = True
                        _set_read_timeout(raw, read_timeout)
                    yield chunk
                if not data:
                    raise _protocol_error("stream ended without [DONE]", router, served=served)
        finally:
            response.close()


# --- helpers -----------------------------------------------------------------------------


def _completions_call(
    router: RouterEntry, route: RouteEntry, body: dict, request_id: str, *, stream: bool
) -> tuple[str, dict]:
    payload = {**body, "stream": stream, "client_reference": request_id}
    if route.session_in_path:
        payload.pop("session_id", None)
        return f"{router.base_url}/api/v1/completions/{route.session_id}", payload
    payload["session_id"] = route.session_id
    return f"{router.base_url}/api/v1/completions", payload


def _auth(router: RouterEntry) -> dict[str, str]:
    return {"Authorization": f"Bearer {router.api_key}"} if router.api_key else {}


def _headers(router: RouterEntry, *, request_id: str, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "X-Request-Id": request_id,
        **_auth(router),
    }
    if stream:
        headers["Accept-Encoding"] = "identity"  # a decompressor would hold tokens back
    return headers


# Prepared-request templates, per session: (url, stream, router key, request id sent?) ->
# (prepared request, send settings). Preparing a request (merging the session's headers,
# cookies, hooks and environment) costs more than sending it; the result only depends on
# the key, so it is done once and copied.
_TEMPLATE_LIMIT = 1024


def _post(
    session: requests.Session,
    url: str,
    data: bytes,
    *,
    router: RouterEntry,
    request_id: str | None,
    stream: bool,
    timeout,
) -> requests.Response:
    """`session.post(url, data=..., headers=_headers(...), timeout=..., stream=...)`, the same
    request on the wire, without re-preparing the parts that never change."""
    if session.trust_env:
        # Proxies, CA bundles and .netrc come from the environment, read per request.
        return session.post(
            url,
            data=data,
            headers=_headers(router, request_id=request_id, stream=stream),
            timeout=timeout,
            stream=stream,
            allow_redirects=False,
        )
    templates = session.__dict__.get("_portal_templates")
    if templates is None:
        templates = session.__dict__.setdefault("_portal_templates", {})
    key = (url, stream, router.api_key, bool(request_id))
    entry = templates.get(key)
    if entry is None:
        # The request id is a placeholder here, so the header keeps its place in the order.
        headers = _headers(router, request_id="-" if request_id else None, stream=stream)
        template = session.prepare_request(
            requests.Request("POST", url, headers=headers, data=b"-")
        )
        send_settings = session.merge_environment_settings(template.url, {}, stream, None, None)
        if len(templates) >= _TEMPLATE_LIMIT:
            templates.clear()
        entry = templates[key] = (template, send_settings)
    template, send_settings = entry
    prepared = template.copy()
    if request_id:
        prepared.headers["X-Request-Id"] = request_id
    prepared.body = data
    prepared.headers["Content-Length"] = str(len(data))
    # Straight to the session's pooled adapter: a router has no cookies or hooks to apply,
    # and a redirect is not followed (it answers as a non-2xx status, not a trip elsewhere).
    return session.get_adapter(prepared.url).send(prepared, timeout=timeout, **send_settings)


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


def _whole_answer_as_chunk(raw, router: RouterEntry) -> dict:
    try:
        data = json.loads(raw.read())
    except _READ_FAILURES as exc:
        raise _exception_error(exc, router, served=False) from None
    except ValueError:
        raise _protocol_error("answer is not JSON", router, served=False) from None
    if not _has_choices(data):
        raise _protocol_error("answer has no choices", router, served=False)
    return data


def _read_some(raw) -> bytes:
    try:
        return raw.read(ERROR_BODY_BYTES)
    except _READ_FAILURES:  # the status is what matters; the body is only for the log
        return b""


def _set_read_timeout(raw, seconds: float) -> None:
    """Change the socket's read timeout mid-response (first byte, then per chunk)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _release(raw) -> None:
    """After [DONE]: read the end of the body so the connection goes back to the pool;
    a router that keeps talking loses its connection instead."""
    with contextlib.suppress(*_READ_FAILURES):
        _set_read_timeout(raw, 1.0)
        for _ in range(4):
            if not raw.read1(READ_SIZE):
                return
