"""Invalidation of the gateway's cached key auth context (fast state).

The gateway caches what it needs to admit a key under `authctx:<hash of the secret>`.
A cached context records its key's generation token (`keygen:<key id>`), read before
the database; every change to the key sets a new token after its transaction
commits, so the next request in any process rebuilds the context, and a slow
rebuild that raced the change can never leave a stale context behind. Tokens are
keyed by key id, so keys whose secret the Portal never hashes (Unkey) work too.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from infra import fastkeys, faststate


def auth_context_key(key_hash: str) -> str:
    return fastkeys.AUTH_CONTEXT(key_hash=key_hash)


def key_generation_key(key_id: object) -> str:
    return fastkeys.KEY_GENERATION(key_id=key_id)


def read_key_generation(key_id: object) -> str:
    return (faststate.get_client().get(key_generation_key(key_id)) or b"").decode()


def invalidate(*key_ids: object) -> None:
    ids = [k for k in key_ids if k]
    if not ids:
        return
    pipe = faststate.get_client().pipeline(transaction=False)
    for key_id in ids:
        pipe.set(key_generation_key(key_id), uuid.uuid4().hex)
    pipe.execute()


def invalidate_on_commit(*key_ids: object) -> None:
    if any(key_ids):
        transaction.on_commit(lambda: invalidate(*key_ids))
