"""A hand-made auth context in fast state, for tests that drive the Lua scripts directly
with their own clock (tests/gateway/test_windows.py, test_leases.py)."""

from __future__ import annotations

import json

from apikeys.authcache import auth_context_key
from apikeys.authcontext import AuthContext
from metering.quotas import quota_key

T0 = 1_800_000_000_000  # ms, on a second boundary
HASH = "h" * 64  # the key hash the context is cached under


def cache_context(
    fast_state, *, key_id: str = "key1", key_hash: str = HASH, key: dict | None = None, **plan
) -> AuthContext:
    """Cache a context for key `key_id` (default `key1`) of org `org1` under `key_hash`
    (default HASH), with loose plan limits except `plan`'s (`rpm`, `tpm`, `cc`, ...), the
    key's own wire fields in `key` (`kl`, `b`, `ipw`, ...), and an allowance counter at zero
    (kept if it exists)."""
    ctx = {
        "k": key_id,
        "o": "org1",
        "ks": "active",
        "kx": 0,
        "am": None,
        "os": "active",
        "kg": "",
        "og": "",
        "pg": "",
        "ps": T0 - 86_400_000,
        "pe": T0 + 7 * 86_400_000,
        "p": {
            "id": 1,
            "code": "t",
            "rpm": 1000,
            "tpm": 10**9,
            "cc": 1000,
            "wr": 10**6,
            "ws": 300,
            "qr": 10**9,
            "qt": 10**12,
            "all": True,
            "m": [],
            **plan,
        },
        **(key or {}),
    }
    fast_state.set(auth_context_key(key_hash), json.dumps(ctx))
    quota = quota_key(org_id="org1", period_start_ms=ctx["ps"])
    fast_state.hsetnx(quota, "r", 0)
    fast_state.hsetnx(quota, "t", 0)
    return AuthContext.from_json(json.dumps(ctx))
