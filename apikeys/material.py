"""Key material: `ctr_live_` + 43 base62 characters (32 random bytes), stored as an HMAC."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings

KEY_PREFIX = "ctr_live_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LENGTH = 43  # ceil(256 / log2(62)): at least 32 bytes of entropy
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def generate_secret() -> str:
    return KEY_PREFIX + _base62(int.from_bytes(secrets.token_bytes(32), "big"), _BODY_LENGTH)


def hash_secret(secret: str) -> str:
    """HMAC-SHA256 of the key under the server-side pepper, hex."""
    return hmac.new(settings.API_KEY_PEPPER.encode(), secret.encode(), hashlib.sha256).hexdigest()


_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + f"[0-9A-Za-z]{{{_BODY_LENGTH}}}")


def looks_like_key(secret: str) -> bool:
    return _KEY_SHAPE.fullmatch(secret) is not None


def display_parts(secret: str) -> tuple[str, str]:
    """(prefix, last four) shown in lists instead of the key."""
    return secret[:DISPLAY_PREFIX_LENGTH], secret[-4:]
