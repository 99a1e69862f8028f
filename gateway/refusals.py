"""Admission's rules: every way admission refuses a request, in the order it checks them.

This list is the order; gateway/lua/admit.lua runs it in one round trip, and a test
(tests/gateway/test_refusals.py) holds the script's refusal order and status strings
equal to it. Why this order:

- the global pause, then the key and its organization (AuthContext.refusal, shared with
  `/v1/models`), then the key's IP allowlist, so nothing is said about models to a key
  that may not ask;
- the model: unknown, disabled, not entitled (plan and key list, AuthContext.allows);
- the caller's own refusal for that model (the prompt does not fit its context window),
  once the key may know the model exists and before anything is counted;
- limits (the key's own and its organization's), the short window, the period's
  allowance, the key's budget, then a router. Entitlement comes
  before limits because a refused request must not spend them; nothing is written
  until every check has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from apikeys.authcontext import KEY_REFUSALS
from gateway.budget import CONTEXT_LENGTH


@dataclass(frozen=True, slots=True)
class Refusal:
    status: str  # what admit.lua answers
    code: str  # the stable error code (portal/errors.py's catalog)
    message: str | None = None  # None: the catalog's message
    caller: bool = False  # decided by the caller before the script runs (admit.lua's `refuse`)


_KEY_CODES = {
    "revoked": "api_key_revoked",
    "disabled": "api_key_disabled",
    "expired": "api_key_expired",
    "org_paused": "account_paused",
    "org_disabled": "account_disabled",
}

ORDER: tuple[Refusal, ...] = (
    Refusal("paused", "access_paused"),
    Refusal("invalid", "invalid_api_key"),
    *(Refusal(status, _KEY_CODES[status]) for status in KEY_REFUSALS),
    Refusal("ip_not_allowed", "ip_not_allowed"),
    Refusal("model_not_found", "model_not_found"),
    Refusal("model_disabled", "model_disabled"),
    Refusal("model_not_allowed", "model_not_allowed"),
    Refusal(CONTEXT_LENGTH, "context_length_exceeded", caller=True),
    Refusal("rate_requests", "rate_limit_exceeded", "Rate limit reached for requests per minute."),
    Refusal("rate_tokens", "rate_limit_exceeded", "Rate limit reached for tokens per minute."),
    Refusal(
        "concurrency",
        "rate_limit_exceeded",
        "Too many concurrent requests for this key or organization.",
    ),
    Refusal("window", "rate_limit_exceeded", "Request cap for the plan's short window reached."),
    Refusal("quota_requests", "insufficient_quota", "You used this period's request allowance."),
    Refusal(
        "quota_tokens",
        "insufficient_quota",
        "This request's worst-case tokens exceed the remaining allowance; lower max_tokens or wait for the reset.",
    ),
    Refusal("budget", "budget_exceeded"),
    Refusal("no_router", "no_healthy_router"),
)

# Answers that are not refusals: load what is missing (auth context, allowance counter)
# and ask again.
RETRY = ("miss", "quota_miss", "cost_miss", "budget_miss")
# Answers that admit: a request ("ok", a router chosen), a listing or key check ("listed").
ADMITS = ("ok", "listed")

BY_STATUS: dict[str, Refusal] = {r.status: r for r in ORDER}
