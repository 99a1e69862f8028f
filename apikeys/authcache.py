"""Invalidation of the gateway's cached key auth context (fast state).

The gateway caches what it needs to admit a key under `authctx:<key hash>`. A
cached context records the key's generation token, read before the database; every
change to the key sets a new token after its transaction commits, so the next
request in any process rebuilds the context, and a slow rebuild that raced the
change can never leave a stale context behind.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from portal import faststate


def auth_context_key(key_hash: str) -> str:
    return faststate.key("authctx", key_hash)


def key_generation_key(key_hash: str) -> str:
    return faststate.key("keygen", key_hash)


def read_key_generation(key_hash: str) -> str:
    return (faststate.get_client().get(key_generation_key(key_hash)) or b"").decode()


def invalidate(*key_hashes: str | None) -> None:
    hashes = [h for h in key_hashes if h]
    if not hashes:
        return
    client = faststate.get_client()
    pipe = client.pipeline(transaction=False)
    for h in hashes:
        pipe.set(key_generation_key(h), uuid.uuid4().hex)
        pipe.delete(auth_context_key(h))
    pipe.execute()


def invalidate_on_commit(*key_hashes: str | None) -> None:
    if any(key_hashes):
        transaction.on_commit(lambda: invalidate(*key_hashes))
