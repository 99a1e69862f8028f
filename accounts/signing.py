"""The dev signer: HS256 dashboard tokens for AUTH_PROVIDER=dev, verified by `accounts.tokens`."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone


def mint_dev_token(
    *,
    subject: str,
    email: str = "",
    name: str = "",
    ttl_seconds: int = 3600,
    now: datetime | None = None,
) -> str:
    """A signed dev token for `subject`, valid for `ttl_seconds` from `now`."""
    issued_at = now or timezone.now()
    claims: dict[str, object] = {
        "iss": settings.DEV_AUTH_ISSUER,
        "aud": settings.DEV_AUTH_AUDIENCE,
        "sub": subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + timedelta(seconds=ttl_seconds),
    }
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    return jwt.encode(claims, settings.DEV_AUTH_SECRET, algorithm="HS256")
