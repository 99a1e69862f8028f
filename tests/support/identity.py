"""Identity-provider stand-ins: signing keys, a JWKS endpoint served by `responses`, token
makers, and a clock for the JWKS cache. The fixtures that hand them out are in tests/conftest.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import jwt
import responses
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

CLERK_ISSUER = "https://clerk.example.test"
CLERK_JWKS_URL = f"{CLERK_ISSUER}/.well-known/jwks.json"
CLERK_APP = "https://app.example.test"
SUPABASE_URL = "https://project.supabase.test"
SUPABASE_ISSUER = f"{SUPABASE_URL}/auth/v1"
SUPABASE_JWKS_URL = f"{SUPABASE_ISSUER}/.well-known/jwks.json"
SUPABASE_SECRET = "supabase-legacy-jwt-secret-at-least-32-bytes"


@dataclass
class Signer:
    """A private key with the kid and alg an identity provider would publish it under."""

    kid: str
    alg: str
    private_key: object

    def public_jwk(self) -> dict:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        document = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**document, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict, *, kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.alg, headers={"kid": kid or self.kid}
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict, *, header: dict | None = None) -> str:
    """An `alg: none` token, built by hand since PyJWT will not produce one with a key."""
    header = header or {"alg": "none", "typ": "JWT"}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hs256_token(claims: dict, *, secret: bytes, kid: str | None = None) -> str:
    """An HS256 token signed by hand, so any bytes (even a public key PEM) can be the secret."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class JWKSServer:
    mock: responses.RequestsMock

    def serve(self, url: str, *signers: Signer) -> None:
        """Publish `signers`' public keys at `url`, replacing what was there."""
        self.mock.upsert(responses.GET, url, json={"keys": [s.public_jwk() for s in signers]})

    def fail(self, url: str, *, status: int = 503) -> None:
        self.mock.upsert(responses.GET, url, status=status)

    def calls(self, url: str) -> int:
        return sum(1 for call in self.mock.calls if call.request.url == url)


@dataclass
class Provider:
    """One configured identity provider: its JWKS URL and a maker of valid-by-default tokens."""

    name: str
    jwks_url: str
    base_claims: dict
    signer: Signer

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {**self.base_claims, "iat": now, "nbf": now, "exp": now + 300}
        for claim, value in overrides.items():
            if value is None:
                claims.pop(claim, None)
            else:
                claims[claim] = value
        return claims

    def token(self, *, signer: Signer | None = None, kid: str | None = None, **overrides) -> str:
        return (signer or self.signer).sign(self.claims(**overrides), kid=kid)
