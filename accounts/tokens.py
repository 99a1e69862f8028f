"""Verify dashboard bearer tokens from Clerk, Supabase Auth or the dev signer.

The accepted algorithms always come from our configuration, never from the token:
a token's `alg` header only picks among what the provider is allowed to use, which
rules out `none` and HMAC-with-a-public-key confusion.
"""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings

from accounts import jwks
from accounts.models import User
from accounts.services import Identity
from portal.errors import PortalError

CLERK_ALGORITHMS = ["RS256"]
SUPABASE_ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
HMAC_ALGORITHMS = ["HS256"]

_REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted."),
    (jwt.InvalidAudienceError, "The token's audience is not accepted."),
    (jwt.InvalidAlgorithmError, "The token's signing algorithm is not accepted."),
    (jwt.InvalidSignatureError, "The token's signature is invalid."),
    (jwt.DecodeError, "The token is malformed."),
]


def verify_dashboard_token(raw: str) -> Identity:
    """The identity in a bearer token from the configured AUTH_PROVIDER, or PortalError."""
    verifiers = {"clerk": _verify_clerk, "supabase": _verify_supabase, "dev": _verify_dev}
    verify = verifiers.get(settings.AUTH_PROVIDER)
    if verify is None:
        raise PortalError("invalid_token", "Dashboard sign-in is not configured.")
    return verify(raw)


def _verify_clerk(raw: str) -> Identity:
    header = _header(raw, allowed=CLERK_ALGORITHMS)
    key = jwks.get_signing_key(url=settings.CLERK_JWKS_URL, kid=header.get("kid"))
    # Clerk session tokens carry no `aud`; `azp` names the frontend origin instead.
    claims = _decode(
        raw,
        key=key,
        algorithms=CLERK_ALGORITHMS,
        issuer=settings.CLERK_ISSUER,
        audience=None,
        required=["exp", "iss", "sub"],
    )
    parties = settings.CLERK_AUTHORIZED_PARTIES
    if parties and claims.get("azp") not in parties:
        raise PortalError("invalid_token", "The token was issued to an unauthorized party.")
    return _identity("clerk", claims, name=claims.get("name"))


def _verify_supabase(raw: str) -> Identity:
    header = _header(raw, allowed=HMAC_ALGORITHMS + SUPABASE_ASYMMETRIC_ALGORITHMS)
    secret = settings.SUPABASE_JWT_SECRET
    if header["alg"] in HMAC_ALGORITHMS:
        # Legacy projects sign with a shared secret; without one, HS256 is refused outright.
        if not secret:
            raise PortalError("invalid_token", "The token's signing algorithm is not accepted.")
        key, algorithms = secret, HMAC_ALGORITHMS
    else:
        key = jwks.get_signing_key(url=settings.SUPABASE_JWKS_URL, kid=header.get("kid"))
        algorithms = SUPABASE_ASYMMETRIC_ALGORITHMS
    claims = _decode(
        raw,
        key=key,
        algorithms=algorithms,
        issuer=settings.SUPABASE_ISSUER or None,
        audience=settings.SUPABASE_JWT_AUDIENCE or "authenticated",
        required=["exp", "aud", "sub"],
    )
    metadata = claims.get("user_metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return _identity("supabase", claims, name=metadata.get("full_name") or metadata.get("name"))


def _verify_dev(raw: str) -> Identity:
    _header(raw, allowed=HMAC_ALGORITHMS)
    claims = _decode(
        raw,
        key=settings.DEV_AUTH_SECRET,
        algorithms=HMAC_ALGORITHMS,
        issuer=settings.DEV_AUTH_ISSUER,
        audience=settings.DEV_AUTH_AUDIENCE,
        required=["exp", "iss", "aud", "sub"],
    )
    return _identity("dev", claims, name=claims.get("name"))


def _header(raw: str, *, allowed: list[str]) -> dict[str, Any]:
    """The unverified header, once its alg is on our allow-list (checked before any key fetch)."""
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise PortalError("invalid_token", "The token is malformed.") from None
    if header.get("alg") not in allowed:
        raise PortalError("invalid_token", "The token's signing algorithm is not accepted.")
    return header


def _decode(
    raw: str,
    *,
    key: Any,
    algorithms: list[str],
    issuer: str | None,
    audience: str | None,
    required: list[str],
) -> dict[str, Any]:
    options = {"require": required, "verify_aud": audience is not None}
    try:
        return jwt.decode(
            raw,
            key=key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise PortalError("token_expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise PortalError("invalid_token", f"The token has no '{exc.claim}' claim.") from None
    except jwt.PyJWTError as exc:
        raise PortalError("invalid_token", _reason(exc)) from None


def _reason(exc: jwt.PyJWTError) -> str:
    for error_type, reason in _REASONS:
        if isinstance(exc, error_type):
            return reason
    return "The bearer token is invalid."


def _identity(provider: str, claims: dict[str, Any], *, name: object) -> Identity:
    """The Identity for verified claims; oversized profile claims are dropped to fit the User row."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > _max_length("subject"):
        raise PortalError("invalid_token", "The token's subject is missing or invalid.")
    email = claims.get("email")
    email = email if isinstance(email, str) and len(email) <= _max_length("email") else ""
    # Supabase user_metadata is user-editable, so its name is clipped rather than trusted to fit.
    name = name[: _max_length("display_name")] if isinstance(name, str) else ""
    return Identity(provider=provider, subject=subject, email=email, name=name)


def _max_length(field: str) -> int:
    return User._meta.get_field(field).max_length
