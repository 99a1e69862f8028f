"""Auth providers' public signing keys, fetched from their JWKS endpoints and cached per URL.

One process-wide cache, safe across threads. An unknown `kid` triggers one refetch
(key rotation), but never more than one fetch per URL per `REFETCH_WINDOW_SECONDS`,
so a stream of tokens with made-up kids cannot hammer the provider or stall requests.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests
from django.conf import settings

from portal.errors import PortalError

logger = logging.getLogger(__name__)

REFETCH_WINDOW_SECONDS = 10.0
# Only public asymmetric keys: an `oct` (HMAC) key in a JWKS would be a shared secret.
_KEY_TYPES = {"RSA", "EC"}

# Indirection so tests can move time forward without sleeping.
_clock = time.monotonic


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, jwt.PyJWK] | None = None
    fetched_at: float = 0.0
    attempted_at: float | None = None


_entries: dict[str, _Entry] = {}
_entries_lock = threading.Lock()


class _FetchFailed(Exception):
    pass


def get_signing_key(*, url: str, kid: str | None) -> jwt.PyJWK:
    """The public key named `kid` at `url`; raises PortalError("invalid_token") if there is none."""
    if not url:
        raise PortalError("invalid_token", "Signing keys are not configured.")
    entry = _entry_for(url)
    with entry.lock:
        now = _clock()
        stale = entry.keys is None or now - entry.fetched_at >= settings.JWKS_CACHE_SECONDS
        if stale or _select(entry.keys, kid) is None:
            _refresh(entry, url=url, now=now)
        if entry.keys is None:
            raise PortalError("invalid_token", "Could not fetch signing keys.")
        key = _select(entry.keys, kid)
    if key is None:
        raise PortalError("invalid_token", "No signing key matches the token.")
    return key


def clear_cache() -> None:
    """Forget every cached key set and refetch timestamp (for tests)."""
    with _entries_lock:
        _entries.clear()


def _entry_for(url: str) -> _Entry:
    with _entries_lock:
        return _entries.setdefault(url, _Entry())


def _refresh(entry: _Entry, *, url: str, now: float) -> None:
    """Refetch unless this URL was tried within the window; on failure keep the old keys."""
    if entry.attempted_at is not None and now - entry.attempted_at < REFETCH_WINDOW_SECONDS:
        return
    entry.attempted_at = now
    try:
        entry.keys = _fetch(url)
        entry.fetched_at = now
    except _FetchFailed as exc:
        logger.warning("JWKS fetch from %s failed: %s", url, exc)


def _fetch(url: str) -> dict[str, jwt.PyJWK]:
    try:
        response = requests.get(
            url, timeout=settings.JWKS_HTTP_TIMEOUT, headers={"Accept": "application/json"}
        )
        response.raise_for_status()
        documents = response.json()["keys"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise _FetchFailed(exc.__class__.__name__) from exc
    if not isinstance(documents, list):
        raise _FetchFailed("'keys' is not a list")
    return _parse(documents)


def _parse(documents: list) -> dict[str, jwt.PyJWK]:
    """Usable signing keys by kid; keys without a kid are stored under ""."""
    keys: dict[str, jwt.PyJWK] = {}
    for document in documents:
        if not isinstance(document, dict) or document.get("kty") not in _KEY_TYPES:
            continue
        if document.get("use", "sig") != "sig":
            continue
        try:
            keys[str(document.get("kid", ""))] = jwt.PyJWK(document)
        except jwt.PyJWTError as exc:
            logger.warning("skipping unusable JWK %r: %s", document.get("kid"), exc)
    return keys


def _select(keys: dict[str, jwt.PyJWK] | None, kid: str | None) -> jwt.PyJWK | None:
    if not keys:
        return None
    if kid is None:
        # A kid-less token is only unambiguous against a single-key set.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)
