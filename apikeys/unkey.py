"""Unkey (API v2) through its official SDK, `unkey.py`: the calls the key provider makes.

One SDK client per process, built on a pooled `httpx.Client` with a hard timeout and
no SDK retries: on the request path a slow Unkey costs one timeout, never a storm.
Every failure to get an answer (timeout, network, 5xx, 429, an unusable body) is an
`UnkeyCallFailed`; what the Portal makes of it is the provider's business.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from django.conf import settings
from unkey.py import Unkey
from unkey.py import errors as unkey_errors
from unkey.py.utils import BackoffStrategy, RetryConfig

from portal.errors import PortalError

logger = logging.getLogger(__name__)

# The plan's limits as Unkey ratelimits. `requests` is named on every verification and
# answers the x-ratelimit-*-requests headers; `window` is applied by Unkey on its own.
REQUESTS_LIMIT = "requests"
WINDOW_LIMIT = "window"
_UNKEY_MAX_LIMIT = 1_000_000
_UNKEY_MIN_DURATION_MS = 1_000
_NO_RETRIES = RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), retry_connection_errors=False)


class UnkeyCallFailed(Exception):
    """Unkey gave no usable answer; `status` is its HTTP status when it answered at all."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


# --- the client ----------------------------------------------------------------------------

_lock = threading.Lock()
_client: tuple[tuple, Unkey] | None = None
_http_for_tests: httpx.Client | None = None


def set_http_client_for_tests(client: httpx.Client | None) -> None:
    """Send every SDK call through `client` (e.g. one on an `httpx.MockTransport`); None undoes it."""
    global _http_for_tests, _client
    with _lock:
        _http_for_tests = client
        _client = None


def _http_client() -> httpx.Client:
    timeout = settings.UNKEY_TIMEOUT_MS / 1000
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
        limits=httpx.Limits(
            max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0
        ),
        follow_redirects=False,
        trust_env=False,
    )


def sdk() -> Unkey:
    """The process-wide SDK client, rebuilt when its settings change or the process forked."""
    global _client
    config = (
        settings.UNKEY_ROOT_KEY,
        settings.UNKEY_BASE_URL,
        settings.UNKEY_TIMEOUT_MS,
        os.getpid(),
        id(_http_for_tests),
    )
    current = _client
    if current is not None and current[0] == config:
        return current[1]
    with _lock:
        if _client is None or _client[0] != config:
            client = Unkey(
                root_key=settings.UNKEY_ROOT_KEY,
                server_url=settings.UNKEY_BASE_URL,
                client=_http_for_tests or _http_client(),
                retry_config=_NO_RETRIES,
                timeout_ms=settings.UNKEY_TIMEOUT_MS,
            )
            _client = (config, client)
        return _client[1]


def _call(operation: str, method, **kwargs):
    """One SDK call; anything short of a parsed answer becomes UnkeyCallFailed."""
    try:
        return method(**kwargs)
    except httpx.TimeoutException as exc:
        raise UnkeyCallFailed(f"{operation}: timed out") from exc
    except (httpx.HTTPError, unkey_errors.NoResponseError) as exc:
        raise UnkeyCallFailed(f"{operation}: {type(exc).__name__}") from exc
    except unkey_errors.UnkeyError as exc:
        raise UnkeyCallFailed(
            f"{operation}: HTTP {exc.status_code}: {_detail(exc)}", status=exc.status_code
        ) from exc
    except Exception as exc:  # the SDK's own failures: never the caller's crash (and no text that
        raise UnkeyCallFailed(f"{operation}: {type(exc).__name__}") from exc  # could quote the key)


def _detail(exc: unkey_errors.UnkeyError) -> str:
    data = getattr(exc, "data", None)
    error = getattr(data, "error", None)
    return getattr(error, "detail", None) or getattr(error, "title", None) or exc.body[:200]


# --- what the Portal tells Unkey ---------------------------------------------------------


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


def plan_ratelimits(plan) -> list[dict]:
    """The plan's request limits as Unkey named ratelimits (Unkey cannot count tokens up front)."""
    limits = [
        {
            "name": REQUESTS_LIMIT,
            "limit": _clamp(plan.requests_per_minute, 1, _UNKEY_MAX_LIMIT),
            "duration": 60_000,
            "autoApply": False,
        }
    ]
    if plan.window_requests and plan.window_seconds:
        limits.append(
            {
                "name": WINDOW_LIMIT,
                "limit": _clamp(plan.window_requests, 1, _UNKEY_MAX_LIMIT),
                "duration": max(plan.window_seconds * 1000, _UNKEY_MIN_DURATION_MS),
                "autoApply": True,
            }
        )
    return limits


def key_meta(*, key_id: object, org_id: object, plan_code: str, status: str) -> dict:
    """What Unkey returns with every verification: enough to name the Portal key, nothing secret."""
    return {
        "portal_key_id": str(key_id),
        "org_id": str(org_id),
        "plan": plan_code,
        "status": status,
    }


def expires_ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


# --- the calls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    plaintext: str


def create_key(
    *, name: str, external_id: str, meta: dict, ratelimits: list[dict], expires: int | None
) -> CreatedKey:
    answer = _call(
        "keys.createKey",
        sdk().keys.create_key,
        api_id=settings.UNKEY_API_ID,
        prefix=settings.UNKEY_KEY_PREFIX,
        name=name or None,
        external_id=external_id,
        meta=meta,
        ratelimits=ratelimits,
        expires=expires,
        enabled=True,
        recoverable=False,
    )
    return CreatedKey(key_id=answer.data.key_id, plaintext=answer.data.key)


@dataclass(frozen=True)
class Verification:
    code: str
    key_id: str
    meta: dict
    ratelimits: list = field(default_factory=list)  # VerifyKeyRatelimitData


def verify_key(secret: str, *, cost: int) -> Verification:
    answer = _call(
        "keys.verifyKey",
        sdk().keys.verify_key,
        key=secret,
        ratelimits=[{"name": REQUESTS_LIMIT, "cost": cost}],
    )
    data = answer.data
    code = getattr(data.code, "value", data.code)  # an open enum: unknown codes stay strings
    return Verification(
        code=str(code),
        key_id=data.key_id or "",
        meta=dict(data.meta or {}),
        ratelimits=list(data.ratelimits or []),
    )


def update_key(key_id: str, **changes) -> None:
    """Partial update: only the named fields change (None clears a nullable field)."""
    _call("keys.updateKey", sdk().keys.update_key, key_id=key_id, **changes)


def delete_key(key_id: str) -> None:
    _call("keys.deleteKey", sdk().keys.delete_key, key_id=key_id)


def get_key(key_id: str):
    """The key's data (`KeyResponseData`), or None when Unkey does not know it."""
    try:
        return _call("keys.getKey", sdk().keys.get_key, key_id=key_id).data
    except UnkeyCallFailed as exc:
        if exc.status == 404:
            return None
        raise


def list_keys() -> list:
    """Every key of the configured API (`KeyResponseData`), all pages."""
    keys = []
    page = _call(
        "apis.listKeys",
        sdk().apis.list_keys,
        api_id=settings.UNKEY_API_ID,
        limit=100,
        revalidate_keys_cache=True,
    )
    while page is not None:
        keys.extend(page.result.data)
        page = _call("apis.listKeys", page.next)
    return keys


# --- reading an answer -----------------------------------------------------------------------


def reset_in_ms(reset: int, *, now_ms: int | None = None) -> int:
    """Unkey's `reset` is a Unix time in ms (older documents call it a duration): ms from now."""
    if reset > 1_000_000_000_000:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return max(reset - now_ms, 0)
    return max(reset, 0)


def duration_text(ms: int) -> str:
    """OpenAI's reset format (`1s`, `6m0s`, `250ms`), as the gateway writes its own headers."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    seconds = -(-ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def display_parts(secret: str) -> tuple[str, str]:
    """(prefix, last four) of an Unkey key: its configured prefix and four characters more."""
    return secret[: len(settings.UNKEY_KEY_PREFIX) + 5], secret[-4:]


def looks_like_key(secret: str) -> bool:
    """A cheap shape check before asking Unkey: the configured prefix, printable, not huge."""
    prefix = settings.UNKEY_KEY_PREFIX + "_"
    return (
        secret.startswith(prefix)
        and len(prefix) < len(secret) <= 256
        and secret.isascii()
        and secret.isprintable()
    )


# What each verification code means to a customer; a code missing here is refused as invalid.
_REFUSALS = {
    "NOT_FOUND": "invalid_api_key",
    "FORBIDDEN": "permission_denied",
    "INSUFFICIENT_PERMISSIONS": "permission_denied",
    "USAGE_EXCEEDED": "insufficient_quota",
    "RATE_LIMITED": "rate_limit_exceeded",
    "DISABLED": "api_key_disabled",
    "EXPIRED": "api_key_expired",
}
_RATE_LIMIT_MESSAGES = {
    REQUESTS_LIMIT: "Rate limit reached for requests per minute.",
    WINDOW_LIMIT: "Request cap for the plan's short window reached.",
}


def rate_limit_headers(ratelimits: list) -> dict[str, str]:
    """The `requests` limit's answer as the gateway's x-ratelimit-*-requests headers."""
    for limit in ratelimits:
        if limit.name == REQUESTS_LIMIT:
            return {
                "x-ratelimit-limit-requests": str(limit.limit),
                "x-ratelimit-remaining-requests": str(max(limit.remaining, 0)),
                "x-ratelimit-reset-requests": duration_text(reset_in_ms(limit.reset)),
            }
    return {}


def refusal(answer: Verification, headers: dict[str, str]) -> PortalError:
    """The stable error for a verification that was not VALID (unknown codes: invalid, logged)."""
    code = _REFUSALS.get(answer.code)
    if code is None:
        logger.warning(
            "Unkey answered verification code %r for key %r: refused", answer.code, answer.key_id
        )
        return PortalError("invalid_api_key")
    if code == "api_key_disabled" and answer.meta.get("status") == "revoked":
        return PortalError("api_key_revoked")  # the Portal revoked it: Unkey keeps it disabled
    if code != "rate_limit_exceeded":
        return PortalError(code)
    exceeded = [limit for limit in answer.ratelimits if limit.exceeded] or answer.ratelimits
    wait_ms = max((reset_in_ms(limit.reset) for limit in exceeded), default=1000)
    return PortalError(
        code,
        _RATE_LIMIT_MESSAGES.get(exceeded[0].name) if exceeded else None,
        headers={
            **headers,
            "retry-after": str(max(1, -(-wait_ms // 1000))),
            "retry-after-ms": str(max(wait_ms, 1)),
        },
    )
