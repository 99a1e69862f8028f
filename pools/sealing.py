"""Router API keys sealed at rest with Fernet (AES-128-CBC + HMAC)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(material: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


def _current() -> Fernet:
    return _fernet(settings.ROUTER_KEY_ENCRYPTION_KEY or settings.SECRET_KEY)


def seal(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode() if plaintext else ""


def unseal(sealed: str) -> str:
    if not sealed:
        return ""
    try:
        return _current().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "router key cannot be decrypted: was ROUTER_KEY_ENCRYPTION_KEY changed?"
        ) from None
