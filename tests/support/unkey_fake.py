"""A fake Unkey (API v2) for tests: the key endpoints the Portal calls, in memory.

Answers follow Unkey's shapes (`{meta: {requestId}, data}` and `{meta, error}`), so the
real SDK parses them. Use it in process through `httpx.MockTransport`:

    fake = FakeUnkey()
    unkey.set_http_client_for_tests(fake.http_client())

or from other processes (live gateways) through `FakeUnkeyServer(fake).start()`.

Knobs: `outage` ("timeout", "down" or an HTTP status), `force_code` (answer every
verification with this code), `lagging` (changes wait for `propagate()`, as Unkey's edge
caches make them wait up to 30 s).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

ROOT_KEY = "unkey_test_root_key"
API_ID = "api_test_portal"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ERRORS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class FakeKey:
    key_id: str
    key_hash: str  # like Unkey, only a hash of the secret is kept
    start: str
    api_id: str
    name: str | None
    external_id: str | None
    meta: dict | None
    expires: int | None
    enabled: bool
    ratelimits: dict[str, dict]  # name -> {id, name, limit, duration, autoApply}
    created_at: int
    deleted: bool = False
    hits: dict[str, list[int]] = field(default_factory=dict)  # ratelimit name -> hit times (ms)

    def public(self) -> dict:
        """`KeyResponseData`."""
        data = {
            "keyId": self.key_id,
            "start": self.start,
            "enabled": self.enabled,
            "createdAt": self.created_at,
        }
        if self.name is not None:
            data["name"] = self.name
        if self.meta is not None:
            data["meta"] = self.meta
        if self.expires is not None:
            data["expires"] = self.expires
        if self.external_id:
            data["identity"] = {"id": f"id_{self.external_id[:8]}", "externalId": self.external_id}
        if self.ratelimits:
            data["ratelimits"] = list(self.ratelimits.values())
        return data


class FakeUnkey:
    """Unkey's state and answers; thread-safe (live gateways verify concurrently)."""

    def __init__(self, *, root_key: str = ROOT_KEY, api_id: str = API_ID):
        self.root_key = root_key
        self.api_id = api_id
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.keys: dict[str, FakeKey] = {}
            self._by_hash: dict[str, str] = {}
            self.calls: list[tuple[str, dict]] = []  # (operation, request body)
            self.outage: str | int | None = None
            self.outage_seconds = 5.0  # how long a "timeout" outage holds a live request
            self.force_code: str | None = None
            self.lagging = False
            self._pending: list = []

    # --- knobs ----------------------------------------------------------------------------

    def propagate(self) -> None:
        """Apply the changes a lagging Unkey held back."""
        with self._lock:
            pending, self._pending = self._pending, []
            for change in pending:
                change()

    def calls_to(self, operation: str) -> list[dict]:
        return [body for op, body in self.calls if op == operation]

    def key(self, key_id: str) -> FakeKey:
        return self.keys[key_id]

    # --- transport ------------------------------------------------------------------------

    def http_client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`httpx.MockTransport` handler."""
        if self.outage == "timeout":
            raise httpx.ReadTimeout("fake Unkey timed out", request=request)
        if self.outage == "down":
            raise httpx.ConnectError("fake Unkey refused the connection", request=request)
        body = json.loads(request.content or b"{}")
        status, payload = self.answer(request.url.path, body, request.headers.get("authorization"))
        return httpx.Response(status, json=payload, headers=_content_type(status))

    def answer(self, path: str, body: dict, authorization: str | None) -> tuple[int, dict]:
        operation = path.rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append((operation, body))
            if isinstance(self.outage, int):
                return _error(self.outage, "the fake is having a bad day")
            if authorization != f"Bearer {self.root_key}":
                return _error(401, "The root key is missing or wrong.")
            handler = {
                "keys.createKey": self._create,
                "keys.verifyKey": self._verify,
                "keys.updateKey": self._update,
                "keys.deleteKey": self._delete,
                "keys.getKey": self._get,
                "apis.listKeys": self._list,
            }.get(operation)
            if handler is None:
                return _error(404, f"No route {path}.")
            return handler(body)

    # --- endpoints ------------------------------------------------------------------------

    def _create(self, body: dict) -> tuple[int, dict]:
        if body.get("apiId") != self.api_id:
            return _error(404, "The API does not exist.")
        random = "".join(secrets.choice(_BASE58) for _ in range(22))
        plaintext = f"{body['prefix']}_{random}" if body.get("prefix") else random
        key = FakeKey(
            key_id="key_" + uuid.uuid4().hex[:20],
            key_hash=_sha256(plaintext),
            start=plaintext[: len(body.get("prefix") or "") + 5],
            api_id=self.api_id,
            name=body.get("name"),
            external_id=body.get("externalId"),
            meta=body.get("meta"),
            expires=body.get("expires"),
            enabled=body.get("enabled", True),
            ratelimits=_ratelimits(body.get("ratelimits")),
            created_at=_now_ms(),
        )
        self.keys[key.key_id] = key
        self._by_hash[key.key_hash] = key.key_id
        return 200, _ok({"keyId": key.key_id, "key": plaintext})

    def _verify(self, body: dict) -> tuple[int, dict]:
        key_id = self._by_hash.get(_sha256(body.get("key", "")))
        key = self.keys.get(key_id) if key_id else None
        if key is None or key.deleted:
            return 200, _ok({"valid": False, "code": self.force_code or "NOT_FOUND"})
        data = {"keyId": key.key_id, "enabled": key.enabled}
        for name in ("name", "meta", "expires"):
            if getattr(key, name) is not None:
                data[name] = getattr(key, name)
        if key.external_id:
            data["identity"] = {"id": f"id_{key.external_id[:8]}", "externalId": key.external_id}
        code = "VALID"
        if not key.enabled:
            code = "DISABLED"
        elif key.expires is not None and key.expires <= _now_ms():
            code = "EXPIRED"
        else:
            named = {r["name"]: r.get("cost", 1) for r in body.get("ratelimits") or []}
            missing = [name for name in named if name not in key.ratelimits]
            if missing:
                return _error(
                    412, f"ratelimit '{missing[0]}' was requested but does not exist for key"
                )
            checked = {name: 1 for name, rl in key.ratelimits.items() if rl["autoApply"]} | named
            results = _apply_ratelimits(key, checked)
            if results:
                data["ratelimits"] = results
            if any(r["exceeded"] for r in results):
                code = "RATE_LIMITED"
        code = self.force_code or code
        data.update(valid=code == "VALID", code=code)
        return 200, _ok(data)

    def _update(self, body: dict) -> tuple[int, dict]:
        key = self.keys.get(body.get("keyId", ""))
        if key is None or key.deleted:
            return _error(404, "The key does not exist.")

        def change() -> None:
            for name, attr in (
                ("name", "name"),
                ("externalId", "external_id"),
                ("meta", "meta"),
                ("expires", "expires"),
            ):
                if name in body:
                    setattr(key, attr, body[name])
            if "enabled" in body and body["enabled"] is not None:
                key.enabled = body["enabled"]
            if "ratelimits" in body:
                key.ratelimits = _ratelimits(body["ratelimits"])

        self._later(change)
        return 200, _ok({})

    def _delete(self, body: dict) -> tuple[int, dict]:
        key = self.keys.get(body.get("keyId", ""))
        if key is None or key.deleted:
            return _error(404, "The key does not exist.")
        self._later(lambda: setattr(key, "deleted", True))
        return 200, _ok({})

    def _get(self, body: dict) -> tuple[int, dict]:
        key = self.keys.get(body.get("keyId", ""))
        if key is None or key.deleted:
            return _error(404, "The key does not exist.")
        return 200, _ok(key.public())

    def _list(self, body: dict) -> tuple[int, dict]:
        if body.get("apiId") != self.api_id:
            return _error(404, "The API does not exist.")
        data = [k.public() for k in self.keys.values() if not k.deleted]
        return 200, {
            "meta": {"requestId": _request_id()},
            "data": data,
            "pagination": {"hasMore": False},
        }

    def _later(self, change) -> None:
        if self.lagging:
            self._pending.append(change)
        else:
            change()


def _ratelimits(given: list | None) -> dict[str, dict]:
    return {
        r["name"]: {
            "id": "rl_" + uuid.uuid4().hex[:16],
            "name": r["name"],
            "limit": r["limit"],
            "duration": r["duration"],
            "autoApply": bool(r.get("autoApply", False)),
        }
        for r in given or []
    }


def _apply_ratelimits(key: FakeKey, costs: dict[str, int]) -> list[dict]:
    """Sliding-window limits, all or nothing (Unkey's multi-limit check is atomic)."""
    now = _now_ms()
    state = {}
    for name, cost in costs.items():
        rl = key.ratelimits[name]
        hits = [t for t in key.hits.get(name, []) if t > now - rl["duration"]]
        key.hits[name] = hits
        state[name] = (rl, hits, cost, len(hits) + cost > rl["limit"])
    exceeded_any = any(exceeded for *_, exceeded in state.values())
    results = []
    for name, (rl, hits, cost, exceeded) in state.items():
        if not exceeded_any:
            hits.extend([now] * cost)
        reset = (hits[0] if hits else now) + rl["duration"]
        results.append(
            {
                "exceeded": exceeded,
                "id": rl["id"],
                "name": name,
                "limit": rl["limit"],
                "duration": rl["duration"],
                "reset": reset,
                "remaining": max(rl["limit"] - len(hits), 0),
                "autoApply": rl["autoApply"],
            }
        )
    return results


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


def _ok(data: dict) -> dict:
    return {"meta": {"requestId": _request_id()}, "data": data}


def _error(status: int, detail: str) -> tuple[int, dict]:
    return status, {
        "meta": {"requestId": _request_id()},
        "error": {
            "title": _ERRORS.get(status, "Error"),
            "detail": detail,
            "status": status,
            "type": f"https://unkey.com/docs/errors/fake/{status}",
        },
    }


def _content_type(status: int) -> dict[str, str]:
    # Unkey's 429s are problem+json; the SDK matches on the content type.
    return {"content-type": "application/problem+json" if status == 429 else "application/json"}


# --- over HTTP, for other processes ----------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # A gevent gateway sends a burst of concurrent verifications at once: the default listen
    # backlog of 5 would reset some of those connections.
    request_queue_size = 256


class FakeUnkeyServer:
    """The fake behind a threaded HTTP server on 127.0.0.1 (live gateway processes call it)."""

    def __init__(self, fake: FakeUnkey):
        self.fake = fake
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeUnkeyServer:
        fake = self.fake

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                if fake.outage in ("timeout", "down"):
                    time.sleep(fake.outage_seconds)  # longer than any client waits
                    self.close_connection = True
                    return
                status, payload = fake.answer(
                    self.path, json.loads(raw or b"{}"), self.headers.get("authorization")
                )
                body = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in _content_type(status).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-unkey", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --- switching the Portal's key provider in a test -------------------------------------------


def use_unkey(settings, *, base_url: str = "https://unkey.test", **overrides) -> None:
    """Point the Portal's settings at a fake Unkey (the SDK's transport is the caller's business)."""
    settings.KEY_PROVIDER = "unkey"
    settings.UNKEY_ROOT_KEY = ROOT_KEY
    settings.UNKEY_API_ID = API_ID
    settings.UNKEY_BASE_URL = base_url
    settings.UNKEY_TIMEOUT_MS = 2000
    settings.UNKEY_FAILURE_MODE = "closed"
    settings.UNKEY_FAIL_OPEN_SECONDS = 300
    settings.UNKEY_KEY_PREFIX = "ctr_live"
    for name, value in overrides.items():
        setattr(settings, name, value)


def in_process_unkey(settings):
    """Generator: the Portal on KEY_PROVIDER=unkey, its SDK answered in process by a FakeUnkey."""
    from apikeys import unkey

    fake = FakeUnkey()
    use_unkey(settings)
    unkey.set_http_client_for_tests(fake.http_client())
    try:
        yield fake
    finally:
        unkey.set_http_client_for_tests(None)


def key_provider_fixture(request, settings):
    """Body of the in-process `key_provider` fixture: "local" yields None, "unkey" a FakeUnkey."""
    if request.param == "local":
        yield None
    else:
        yield from in_process_unkey(settings)
