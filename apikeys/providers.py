"""Key providers: who issues secrets and how they are checked.

`local` keeps an HMAC in Postgres; `unkey` (KEY_PROVIDER=unkey) issues and verifies
through Unkey. Services call `get_provider()` and never branch on the name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.models import Plan
from accounts.selectors import active_subscription_or_none
from apikeys import material
from apikeys.models import ApiKey
from infra import fastkeys, faststate
from portal.errors import PortalError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedSecret:
    plaintext: str
    key_hash: str | None
    prefix: str
    last_four: str
    external_id: str = ""


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a presented secret is, as far as the provider can tell on the request path."""

    cache_key: str  # HMAC of the secret: names the cached auth context
    external_id: str = ""  # the provider's key id, when the provider verified the key
    headers: dict[str, str] = field(default_factory=dict)  # the provider's rate-limit answer


class KeyProvider(Protocol):
    name: str

    def issue(
        self,
        *,
        key_id: str,
        org_id: str,
        plan_code: str,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedSecret: ...

    def revoke(self, *, external_id: str) -> None:
        """Tell the provider a key was revoked (after commit; never raises)."""

    def set_enabled(self, *, external_id: str, enabled: bool) -> None:
        """Tell the provider a key was disabled or enabled again (after commit; never raises)."""

    def authenticate(self, secret: str, *, consume: bool = True) -> KeyIdentity:
        """Check a presented secret; raise PortalError when the provider refuses it.

        `consume=False` checks the key without spending from its request rate limit
        (`GET /v1/models` is not an inference request).
        """


class LocalProvider:
    name = "local"

    def issue(
        self,
        *,
        key_id: str,
        org_id: str,
        plan_code: str,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedSecret:
        plaintext = material.generate_secret()
        prefix, last_four = material.display_parts(plaintext)
        return IssuedSecret(plaintext, material.hash_secret(plaintext), prefix, last_four)

    def revoke(self, *, external_id: str) -> None:
        """Local keys are refused as soon as their row says so: nothing remote to tell."""

    def set_enabled(self, *, external_id: str, enabled: bool) -> None:
        """As for revoke: the row is the whole truth."""

    def authenticate(self, secret: str, *, consume: bool = True) -> KeyIdentity:
        # Only the shape is checked here; the cached auth context says whether it exists.
        if not material.looks_like_key(secret):
            raise PortalError("invalid_api_key")
        return KeyIdentity(cache_key=material.hash_secret(secret))


_OUTAGE_LOG_EVERY_SECONDS = 10.0


class UnkeyProvider:
    """Unkey issues and verifies; every Portal rule (status, limits, allowance, routing) still
    runs in the Portal's admission, which also refuses a revoked key before Unkey has caught up."""

    name = "unkey"

    def __init__(self) -> None:
        self._outage_logged_at = 0.0

    # --- issuing and mirroring the Portal's changes ---------------------------------------

    def issue(
        self,
        *,
        key_id: str,
        org_id: str,
        plan_code: str,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedSecret:
        from apikeys import unkey

        plan = Plan.objects.get(code=plan_code)
        try:
            created = unkey.create_key(
                name=name,
                external_id=org_id,
                meta=unkey.key_meta(
                    key_id=key_id, org_id=org_id, plan_code=plan_code, status="active"
                ),
                ratelimits=unkey.plan_ratelimits(plan),
                expires=unkey.expires_ms(expires_at),
            )
        except unkey.UnkeyCallFailed as exc:
            logger.error("Unkey could not create a key: %s", exc)
            raise PortalError("key_service_unavailable") from None
        prefix, last_four = unkey.display_parts(created.plaintext)
        return IssuedSecret(created.plaintext, None, prefix, last_four, external_id=created.key_id)

    def revoke(self, *, external_id: str) -> None:
        self._mirror(external_id=external_id, enabled=False, status="revoked")

    def set_enabled(self, *, external_id: str, enabled: bool) -> None:
        self._mirror(
            external_id=external_id, enabled=enabled, status="active" if enabled else "disabled"
        )

    def _mirror(self, *, external_id: str, enabled: bool, status: str) -> None:
        """Tell Unkey after the Portal committed. The Portal already refuses the key on its next
        request, so a failure here only leaves drift for `manage.py sync_unkey_keys`."""
        from apikeys import unkey

        try:
            meta = _meta_of(external_id, status=status)
            unkey.update_key(
                external_id, enabled=enabled, **({"meta": meta} if meta is not None else {})
            )
        except unkey.UnkeyCallFailed as exc:
            logger.error(
                "Unkey did not take key %s %s: %s; run sync_unkey_keys", external_id, status, exc
            )
        except Exception:  # an after-commit side effect must never fail the request
            logger.exception(
                "Telling Unkey key %s %s failed; run sync_unkey_keys", external_id, status
            )

    # --- the request path -------------------------------------------------------------------

    def authenticate(self, secret: str, *, consume: bool = True) -> KeyIdentity:
        from apikeys import unkey

        if not unkey.looks_like_key(secret):
            raise PortalError("invalid_api_key")
        cache_key = material.hash_secret(secret)
        try:
            answer = unkey.verify_key(secret, cost=1 if consume else 0)
        except unkey.UnkeyCallFailed as exc:
            return self._unavailable(cache_key, exc)
        except Exception as exc:  # a surprise from the SDK is an outage too, never a 500
            logger.exception("Unkey verification failed unexpectedly")
            return self._unavailable(cache_key, exc)
        headers = unkey.rate_limit_headers(answer.ratelimits)
        if answer.code == "VALID" and answer.key_id:
            if settings.UNKEY_FAILURE_MODE == "open":
                _remember_verified(cache_key, answer.key_id)
            return KeyIdentity(cache_key=cache_key, external_id=answer.key_id, headers=headers)
        if settings.UNKEY_FAILURE_MODE == "open":
            _remember_verified(cache_key, None)
        if answer.code == "NOT_FOUND" and material.looks_like_key(secret):
            # A key issued locally before the switch to Unkey: its HMAC row decides.
            return KeyIdentity(cache_key=cache_key)
        raise unkey.refusal(answer, headers)

    def _unavailable(self, cache_key: str, exc: Exception) -> KeyIdentity:
        """Unkey did not answer: fail closed (503), or open for a key it said VALID lately."""
        now = time.monotonic()
        if now - self._outage_logged_at >= _OUTAGE_LOG_EVERY_SECONDS:
            self._outage_logged_at = now
            logger.warning(
                "Unkey verification failed (mode %s): %s", settings.UNKEY_FAILURE_MODE, exc
            )
        if settings.UNKEY_FAILURE_MODE == "open":
            remembered = faststate.get_client().get(_verified_key(cache_key))
            if remembered:
                return KeyIdentity(cache_key=cache_key, external_id=remembered.decode())
        raise PortalError("key_service_unavailable")


def _verified_key(cache_key: str) -> str:
    """Fast-state name of "Unkey said VALID lately" for one secret (by its HMAC)."""
    return fastkeys.UNKEY_VERIFIED(cache_key=cache_key)


def _meta_of(external_id: str, *, status: str) -> dict | None:
    """The meta Unkey keeps for a Portal key, from the committed rows; None for no such key."""
    from apikeys import unkey

    key = ApiKey.objects.filter(provider=ApiKey.Provider.UNKEY, external_id=external_id).first()
    if key is None:
        return None
    sub = active_subscription_or_none(org_id=key.org_id)
    return unkey.key_meta(
        key_id=key.pk, org_id=key.org_id, plan_code=sub.plan.code if sub else "", status=status
    )


def get_provider(name: str | None = None) -> KeyProvider:
    """The configured provider, or the one named (a key's `provider`: the one that issued it)."""
    return _provider(name or settings.KEY_PROVIDER)


@lru_cache(maxsize=4)
def _provider(name: str) -> KeyProvider:
    if name == "local":
        return LocalProvider()
    if name == "unkey":
        return UnkeyProvider()
    raise ImproperlyConfigured(f"KEY_PROVIDER={name!r} is unknown; use 'local' or 'unkey'.")


def _remember_verified(cache_key: str, key_id: str | None) -> None:
    """Note (or forget) a key Unkey verified, for fail-open during an Unkey outage; with
    fast state away too, the note is skipped: admission answers for Redis (gateway/degraded.py)."""
    try:
        if key_id is None:
            faststate.get_client().delete(_verified_key(cache_key))
        else:
            faststate.get_client().set(
                _verified_key(cache_key), key_id, ex=settings.UNKEY_FAIL_OPEN_SECONDS
            )
    except redis.RedisError:
        logger.warning("fast state unavailable: Unkey verification not remembered")
