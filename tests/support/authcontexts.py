"""A hand-made auth context in fast state, for tests that drive the Lua scripts directly
with their own clock (tests/gateway/test_windows.py, test_leases.py)."""

from __future__ import annotations

import json

from apikeys.authcache import auth_context_key
from apikeys.authcontext import AuthContext
from metering.quotas import quota_key

T0 = 1_800_000_000_000  # ms, on a second boundary
HASH = "h" * 64  # the key hash the context is cached under


def cache_context(fast_state, **plan) -> AuthContext:
    """Cache a context for key `key1` of org `org1` under HASH, with loose plan limits
    except `plan`'s (`rpm`, `tpm`, `cc`, ...), and an allowance counter at zero."""
    ctx = {
        "k": "key1",
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
    }
    fast_state.set(auth_context_key(HASH), json.dumps(ctx))
    fast_state.hset(quota_key(org_id="org1", period_start_ms=ctx["ps"]), mapping={"r": 0, "t": 0})
    return AuthContext.from_json(json.dumps(ctx))
