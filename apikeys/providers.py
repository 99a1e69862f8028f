"""Key providers: who issues secrets and how they are checked.

`local` keeps an HMAC in Postgres; `unkey` (KEY_PROVIDER=unkey) issues and verifies
through Unkey. Services call `get_provider()` and never branch on the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apikeys import material


@dataclass(frozen=True)
class IssuedSecret:
    plaintext: str
    key_hash: str | None
    prefix: str
    last_four: str
    external_id: str = ""


class KeyProvider(Protocol):
    name: str

    def issue(self, *, key_id: str, org_id: str, plan_code: str) -> IssuedSecret: ...

    def revoke(self, *, external_id: str) -> None: ...


class LocalProvider:
    name = "local"

    def issue(self, *, key_id: str, org_id: str, plan_code: str) -> IssuedSecret:
        plaintext = material.generate_secret()
        prefix, last_four = material.display_parts(plaintext)
        return IssuedSecret(plaintext, material.hash_secret(plaintext), prefix, last_four)

    def revoke(self, *, external_id: str) -> None:
        """Local keys are refused as soon as their row says so: nothing remote to tell."""


def get_provider() -> KeyProvider:
    if settings.KEY_PROVIDER == "local":
        return LocalProvider()
    raise ImproperlyConfigured(
        f"KEY_PROVIDER={settings.KEY_PROVIDER!r} is not available in this build; use 'local'."
    )
