"""The auth context the gateway caches per key: everything admission needs, no Postgres.

Built from Postgres on a cache miss and stored as compact JSON under the `authctx` key
(infra.fastkeys); unknown hashes are cached as `none` for a short while. The JSON's
two-letter keys are the wire format the admission script (gateway/lua/admit.lua) reads;
Python reads the context only through `AuthContext`, never through those keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from accounts.entitlement import PlanEntitlement
from accounts.invalidation import read_generations
from accounts.limits import PlanLimits, allowance_period, org_limits
from accounts.models import Organization, PlanSubscription, User
from accounts.selectors import active_subscriptions
from accounts.services import subscription_period
from apikeys import authcache, networks
from apikeys.budgets import KeyBudget, key_budget
from apikeys.models import ApiKey
from apikeys.providers import KeyIdentity
from infra import faststate

NEGATIVE_TTL_SECONDS = 60


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The key's own limits, each at most its organization's (the organization's when the
    key sets none): admission counts the key against these and the org against its own."""

    requests_per_minute: int
    tokens_per_minute: int
    concurrent_requests: int


@dataclass(frozen=True, slots=True)
class AuthContext:
    key_id: str
    org_id: str
    key_status: str
    key_expires_ms: int  # 0: never
    key_models: frozenset[str] | None  # the key's own restriction; None: the plan's models
    org_status: str
    key_generation: str
    org_generation: str
    plan_generation: str
    period_start_ms: int
    period_end_ms: int
    plan_id: int
    plan_code: str
    limits: PlanLimits  # the organization's: its plan's, with staff overrides
    entitlement: PlanEntitlement
    key_limits: KeyLimits | None = None  # None: the organization's
    budget: KeyBudget | None = None
    allowed_ips: tuple[str, ...] | None = None  # CIDR networks; None: from anywhere

    # --- the rules ------------------------------------------------------------------

    def refusal(self, *, now_ms: int) -> str | None:
        """Why this key may not be used now (the first of KEY_REFUSALS that holds), or None.

        The statuses are admit.lua's; gateway/refusals.py gives their order and error codes."""
        for status, applies in _KEY_CHECKS:
            if applies(self, now_ms):
                return status
        return None

    def allows(self, model_name: str) -> bool:
        """Entitlement to a canonical model name: the plan's, narrowed by the key's own list."""
        if not self.entitlement.allows(model_name):
            return False
        return self.key_models is None or model_name in self.key_models

    def ip_allowed(self, address: str | None) -> bool:
        """Whether the key may be used from `address` (admit.lua matches the same way)."""
        return self.allowed_ips is None or networks.address_allowed(address, list(self.allowed_ips))

    @property
    def effective_key_limits(self) -> KeyLimits:
        lim = self.limits
        return self.key_limits or KeyLimits(
            lim.requests_per_minute, lim.tokens_per_minute, lim.concurrent_requests
        )

    # --- the wire format (compact JSON; admit.lua reads the same keys) -----------------

    def to_json(self) -> str:
        lim = self.limits
        kl = self.key_limits
        budget = self.budget
        return json.dumps(
            {
                "k": self.key_id,
                "o": self.org_id,
                "ks": self.key_status,
                "kx": self.key_expires_ms,
                "am": sorted(self.key_models) if self.key_models is not None else None,
                "os": self.org_status,
                "kg": self.key_generation,
                "og": self.org_generation,
                "pg": self.plan_generation,
                "ps": self.period_start_ms,
                "pe": self.period_end_ms,
                "p": {
                    "id": self.plan_id,
                    "code": self.plan_code,
                    "rpm": lim.requests_per_minute,
                    "tpm": lim.tokens_per_minute,
                    "cc": lim.concurrent_requests,
                    "wr": lim.window_requests,
                    "ws": lim.window_seconds,
                    "qr": lim.weekly_requests,
                    "qt": lim.weekly_tokens,
                    "all": self.entitlement.all_models,
                    "m": sorted(self.entitlement.models),
                },
                "kl": (
                    [kl.requests_per_minute, kl.tokens_per_minute, kl.concurrent_requests]
                    if kl is not None
                    else None
                ),
                "b": (
                    {
                        "a": budget.amount,
                        "pd": budget.period,
                        "s": budget.start_ms,
                        "e": budget.end_ms,
                    }
                    if budget is not None
                    else None
                ),
                "ip": list(self.allowed_ips) if self.allowed_ips is not None else None,
                "ipw": (
                    networks.wire_networks(list(self.allowed_ips))
                    if self.allowed_ips is not None
                    else None
                ),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuthContext:
        d = json.loads(raw)
        p = d["p"]
        return cls(
            key_id=d["k"],
            org_id=d["o"],
            key_status=d["ks"],
            key_expires_ms=d["kx"],
            key_models=frozenset(d["am"]) if d["am"] is not None else None,
            org_status=d["os"],
            key_generation=d["kg"],
            org_generation=d["og"],
            plan_generation=d["pg"],
            period_start_ms=d["ps"],
            period_end_ms=d["pe"],
            plan_id=p["id"],
            plan_code=p["code"],
            limits=PlanLimits(
                requests_per_minute=p["rpm"],
                tokens_per_minute=p["tpm"],
                concurrent_requests=p["cc"],
                window_requests=p["wr"],
                window_seconds=p["ws"],
                weekly_requests=p["qr"],
                weekly_tokens=p["qt"],
            ),
            entitlement=PlanEntitlement(all_models=p["all"], models=frozenset(p["m"])),
            key_limits=KeyLimits(*d["kl"]) if d.get("kl") else None,
            budget=(
                KeyBudget(amount=b["a"], period=b["pd"], start_ms=b["s"], end_ms=b["e"])
                if (b := d.get("b"))
                else None
            ),
            allowed_ips=tuple(d["ip"]) if d.get("ip") is not None else None,
        )


# Key and org status, in the order admission checks them (admit.lua does the same; a test
# holds the two together). Org statuses other than active and paused all refuse as disabled.
_KEY_CHECKS = (
    ("revoked", lambda c, now_ms: c.key_status == ApiKey.Status.REVOKED),
    ("disabled", lambda c, now_ms: c.key_status == ApiKey.Status.DISABLED),
    ("expired", lambda c, now_ms: c.key_expires_ms > 0 and now_ms >= c.key_expires_ms),
    ("org_paused", lambda c, now_ms: c.org_status == Organization.Status.PAUSED),
    ("org_disabled", lambda c, now_ms: c.org_status != Organization.Status.ACTIVE),
)
KEY_REFUSALS: tuple[str, ...] = tuple(status for status, _ in _KEY_CHECKS)

_decoded: dict[bytes, AuthContext] = {}


def decode(raw: bytes | None) -> AuthContext | None:
    """The context for cached bytes, memoized by those exact bytes (they change rarely)."""
    if not raw:
        return None
    ctx = _decoded.get(raw)
    if ctx is None:
        if len(_decoded) > 10_000:
            _decoded.clear()
        ctx = _decoded[raw] = AuthContext.from_json(raw)
    return ctx


def _ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value else 0


def build_auth_context(*, key_hash: str, now: datetime) -> AuthContext | None:
    """The context of the key with this hash, or None for no such key."""
    key = ApiKey.objects.select_related("org").filter(key_hash=key_hash).first()
    if key is None:
        return None
    return _context(key=key, now=now)


def _active_subscription(org_id) -> PlanSubscription | None:
    return active_subscriptions().select_related("plan").filter(org_id=org_id).first()


def _context(*, key: ApiKey, now: datetime) -> AuthContext | None:
    sub = _active_subscription(key.org_id)
    if sub is None:
        return None
    # Generations first, then the rows the context states: a change that commits after
    # this read sets a new generation, so the next request rebuilds; one that committed
    # before it is in the rows read below. Either way no stale context survives.
    kg = authcache.read_key_generation(key.pk)
    og, pg = read_generations(org_id=key.org_id, plan_id=sub.plan_id)
    key = ApiKey.objects.select_related("org", "created_by").get(pk=key.pk)
    sub = _active_subscription(key.org_id)
    if sub is None:
        return None
    plan = sub.plan
    start, end = subscription_period(subscription=sub, now=now)
    org_lim = org_limits(plan=plan, org=key.org)
    allowance_start, allowance_end = allowance_period(org=key.org, start=start, end=end)
    return AuthContext(
        key_id=str(key.pk),
        org_id=str(key.org_id),
        key_status=effective_status(key),
        key_expires_ms=_ms(key.expires_at),
        key_models=frozenset(key.allowed_models) if key.allowed_models else None,
        org_status=key.org.status,
        key_generation=kg,
        org_generation=og,
        plan_generation=pg,
        period_start_ms=_ms(allowance_start),
        period_end_ms=_ms(allowance_end),
        plan_id=plan.pk,
        plan_code=plan.code,
        limits=org_lim,
        entitlement=PlanEntitlement.of(plan),
        key_limits=key_limits(key, org_lim),
        budget=key_budget(
            amount=key.budget_amount,
            period=key.budget_period,
            now=now,
            billing_start=start,
            billing_end=end,
        ),
        allowed_ips=tuple(key.allowed_ips) if key.allowed_ips else None,
    )


def key_limits(key: ApiKey, org: PlanLimits) -> KeyLimits:
    """The key's limits in force: its own, none above its organization's."""

    def own(value: int | None, cap: int) -> int:
        return cap if value is None else min(value, cap)

    return KeyLimits(
        requests_per_minute=own(key.requests_per_minute, org.requests_per_minute),
        tokens_per_minute=own(key.tokens_per_minute, org.tokens_per_minute),
        concurrent_requests=own(key.concurrent_requests, org.concurrent_requests),
    )


def effective_status(key: ApiKey) -> str:
    """The key's status as admission sees it: an active key whose creator (a customer user)
    is disabled counts as disabled (accounts.privileges states the rule; the user's status
    change drops the cached context, apikeys.apps)."""
    creator = key.created_by
    if (
        key.status == ApiKey.Status.ACTIVE
        and creator is not None
        and creator.status != User.Status.ACTIVE
    ):
        return ApiKey.Status.DISABLED
    return key.status


def build_for_identity(*, identity: KeyIdentity, now: datetime) -> AuthContext | None:
    """The context of a presented key: by the provider's key id, else by the HMAC."""
    if identity.external_id:
        key = (
            ApiKey.objects.filter(external_id=identity.external_id).exclude(external_id="").first()
        )
        return _context(key=key, now=now) if key is not None else None
    return build_auth_context(key_hash=identity.cache_key, now=now)


def refresh_auth_context(*, identity: KeyIdentity, now: datetime) -> bool:
    """Load the context from Postgres into fast state. False when the key does not exist."""
    ctx = build_for_identity(identity=identity, now=now)
    key_hash = identity.cache_key
    client = faststate.get_client()
    if ctx is None:
        client.set(authcache.auth_context_key(key_hash), "none", ex=NEGATIVE_TTL_SECONDS)
        return False
    client.set(
        authcache.auth_context_key(key_hash), ctx.to_json(), ex=settings.AUTH_CONTEXT_TTL_SECONDS
    )
    return True
