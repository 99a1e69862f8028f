"""Key providers: who issues secrets and how they are checked.

`local` keeps an HMAC in Postgres; `unkey` (KEY_PROVIDER=unkey) issues and verifies
through Unkey. Services call `get_provider()` and never branch on the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apikeys import material
from portal.errors import PortalError


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

    def issue(self, *, key_id: str, org_id: str, plan_code: str) -> IssuedSecret: ...

    def revoke(self, *, external_id: str) -> None: ...

    def authenticate(self, secret: str) -> KeyIdentity:
        """Check a presented secret; raise PortalError when the provider refuses it."""


class LocalProvider:
    name = "local"

    def issue(self, *, key_id: str, org_id: str, plan_code: str) -> IssuedSecret:
        plaintext = material.generate_secret()
        prefix, last_four = material.display_parts(plaintext)
        return IssuedSecret(plaintext, material.hash_secret(plaintext), prefix, last_four)

    def revoke(self, *, external_id: str) -> None:
        """Local keys are refused as soon as their row says so: nothing remote to tell."""

    def authenticate(self, secret: str) -> KeyIdentity:
        # Only the shape is checked here; the cached auth context says whether it exists.
        if not material.looks_like_key(secret):
            raise PortalError("invalid_api_key")
        return KeyIdentity(cache_key=material.hash_secret(secret))


def get_provider() -> KeyProvider:
    return _provider(settings.KEY_PROVIDER)


@lru_cache(maxsize=4)
def _provider(name: str) -> KeyProvider:
    if name == "local":
        return LocalProvider()
    raise ImproperlyConfigured(f"KEY_PROVIDER={name!r} is not available in this build; use 'local'.")
