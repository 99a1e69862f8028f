"""Invalidation of the gateway's cached key auth context (fast state).

The gateway caches what it needs to admit a key under `authctx:<key hash>`; every
change to a key, its org or its plan drops that entry after the transaction commits,
so the next request in any process reads the new truth.
"""

from __future__ import annotations

from django.db import transaction

from portal import faststate


def auth_context_key(key_hash: str) -> str:
    return faststate.key("authctx", key_hash)


def invalidate_on_commit(*key_hashes: str | None) -> None:
    names = [auth_context_key(h) for h in key_hashes if h]
    if names:
        transaction.on_commit(lambda: faststate.get_client().delete(*names))
