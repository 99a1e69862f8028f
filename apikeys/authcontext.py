"""The auth context the gateway caches per key: everything admission needs, no Postgres.

Built from Postgres on a cache miss and stored as compact JSON under
`authctx:<key hash>`; unknown hashes are cached as `none` for a short while.
"""

from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings

from accounts.invalidation import read_generations
from accounts.models import PlanSubscription
from accounts.services import period_containing, plan_model_names
from apikeys import authcache
from apikeys.models import ApiKey
from apikeys.providers import KeyIdentity
from portal import faststate

NEGATIVE_TTL_SECONDS = 60


def _ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value else 0


def build_auth_context(*, key_hash: str, now: datetime) -> str | None:
    """The context JSON for the key with this hash, or None for no such key."""
    key = ApiKey.objects.select_related("org").filter(key_hash=key_hash).first()
    if key is None:
        return None
    return _context_json(key=key, now=now)


def _active_subscription(org_id) -> PlanSubscription | None:
    return (
        PlanSubscription.objects.select_related("plan")
        .filter(org_id=org_id, status=PlanSubscription.Status.ACTIVE)
        .first()
    )


def _context_json(*, key: ApiKey, now: datetime) -> str | None:
    sub = _active_subscription(key.org_id)
    if sub is None:
        return None
    # Generations first, then the rows the context states: a change that commits after
    # this read sets a new generation, so the next request rebuilds; one that committed
    # before it is in the rows read below. Either way no stale context survives.
    kg = authcache.read_key_generation(key.pk)
    og, pg = read_generations(org_id=key.org_id, plan_id=sub.plan_id)
    key = ApiKey.objects.select_related("org").get(pk=key.pk)
    sub = _active_subscription(key.org_id)
    if sub is None:
        return None
    plan = sub.plan
    start, end = sub.current_period_start, sub.current_period_end
    if not start <= now < end:
        start, end = period_containing(now=now)
    ctx = {
        "k": str(key.pk),
        "o": str(key.org_id),
        "ks": key.status,
        "kx": _ms(key.expires_at),
        "am": key.allowed_models or None,
        "os": key.org.status,
        "kg": kg,
        "og": og,
        "pg": pg,
        "ps": _ms(start),
        "pe": _ms(end),
        "p": {
            "id": plan.pk,
            "code": plan.code,
            "rpm": plan.requests_per_minute,
            "tpm": plan.tokens_per_minute,
            "cc": plan.concurrent_requests,
            "wr": plan.window_requests,
            "ws": plan.window_seconds,
            "qr": plan.weekly_requests,
            "qt": plan.weekly_tokens,
            "all": plan.all_models,
            "m": sorted(plan_model_names(plan=plan)) if not plan.all_models else [],
        },
    }
    return json.dumps(ctx, separators=(",", ":"))


def build_for_identity(*, identity: KeyIdentity, now: datetime) -> str | None:
    """The context JSON for a presented key: by the provider's key id, else by the HMAC."""
    if identity.external_id:
        key = ApiKey.objects.filter(external_id=identity.external_id).exclude(external_id="").first()
        return _context_json(key=key, now=now) if key is not None else None
    return build_auth_context(key_hash=identity.cache_key, now=now)


def refresh_auth_context(*, identity: KeyIdentity, now: datetime) -> bool:
    """Load the context from Postgres into fast state. False when the key does not exist."""
    raw = build_for_identity(identity=identity, now=now)
    key_hash = identity.cache_key
    client = faststate.get_client()
    if raw is None:
        client.set(authcache.auth_context_key(key_hash), "none", ex=NEGATIVE_TTL_SECONDS)
        return False
    client.set(authcache.auth_context_key(key_hash), raw, ex=settings.AUTH_CONTEXT_TTL_SECONDS)
    return True
