"""Every fast-state (Redis) key the Portal uses, named once.

Python builds keys with these patterns (`fastkeys.QUOTA(org_id=..., period_start_ms=...)`)
and the gateway's Lua scripts call the functions `lua_prelude()` generates from the same
patterns (`k_quota(org_id, period_start_ms)`), so no module spells a key by hand. Every
key carries FAST_STATE_PREFIX (tests change it per test), which the scripts receive as
their first argument.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class KeyPattern:
    lua_name: str  # the Lua function that builds it: k_<lua_name>(...)
    template: str  # str.format fields name the parts, in the Lua function's argument order
    what: str

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(field for _, field, _, _ in string.Formatter().parse(self.template) if field)

    def __call__(self, **parts: object) -> str:
        return settings.FAST_STATE_PREFIX + self.template.format(**parts)

    def lua(self) -> str:
        """`local function k_<name>(a, b) return KP .. 'lit' .. a .. 'lit' .. b end`."""
        pieces = ["KP"]
        for literal, field, _, _ in string.Formatter().parse(self.template):
            if literal:
                pieces.append(f"'{literal}'")
            if field:
                pieces.append(field)
        args = ", ".join(self.parts)
        return f"local function k_{self.lua_name}({args}) return {' .. '.join(pieces)} end"


# Keys: the auth context cache and the generation tokens that invalidate it.
AUTH_CONTEXT = KeyPattern(
    "authctx", "authctx:{key_hash}", "a key's cached auth context (JSON, or `none`)"
)
KEY_GENERATION = KeyPattern("keygen", "keygen:{key_id}", "a key's generation token")
ORG_GENERATION = KeyPattern("orggen", "orggen:{org_id}", "an organization's generation token")
PLAN_GENERATION = KeyPattern("plangen", "plangen:{plan_id}", "a plan's generation token")
UNKEY_VERIFIED = KeyPattern("unkeyok", "unkeyok:{cache_key}", "an Unkey key verified lately")

AUTH_FAILURES = KeyPattern(
    "auth_failures", "authfail:{client_ip}:{minute}", "failed authentications from an address"
)

# Limits: sliding windows (hashes, gateway/lua/windows.lua), in-flight leases (sorted sets).
KEY_REQUESTS = KeyPattern("key_requests", "rl:k:{key_id}:r", "a key's requests per minute window")
KEY_TOKENS = KeyPattern("key_tokens", "rl:k:{key_id}:t", "a key's tokens per minute window")
ORG_REQUESTS = KeyPattern("org_requests", "rl:o:{org_id}:r", "an org's requests per minute window")
ORG_TOKENS = KeyPattern("org_tokens", "rl:o:{org_id}:t", "an org's tokens per minute window")
KEY_CONCURRENCY = KeyPattern("key_concurrency", "cc:k:{key_id}", "a key's in-flight requests")
ORG_CONCURRENCY = KeyPattern("org_concurrency", "cc:o:{org_id}", "an org's in-flight requests")
ORG_WINDOW = KeyPattern(
    "org_window", "win:{org_id}", "an org's requests in the plan's short window"
)
QUOTA = KeyPattern(
    "quota", "quota:{org_id}:{period_start_ms}", "an org's allowance used this period (r, t)"
)
KEY_BUDGET = KeyPattern(
    "key_budget",
    "budget:{key_id}:{period_start_ms}",
    "a key's spend (settled and reserved micro-USD) in its budget period",
)

# Control: the global pause and the catalog version.
PAUSE = KeyPattern("pause", "pause:global", "the global access pause (its customer message)")
CATALOG_VERSION = KeyPattern(
    "catalog_version", "catalog:version", "the model catalog's version token"
)

# Routers: circuit breakers (hashes) and in-flight leases (sorted sets).
BREAKER = KeyPattern("breaker", "brk:{router_id}", "a router's circuit breaker")
ROUTER_INFLIGHT = KeyPattern("router_inflight", "rif:{router_id}", "a router's in-flight requests")
ROUTER_SLOW = KeyPattern(
    "router_slow", "rslow:{router_id}", "a router its last probe found slow (ms to first byte)"
)
PROBE_ROUND = KeyPattern("probe_round", "probe:{name}", "a health-probe round under way")

# Requests in flight, for healing after a process dies (gateway/leases.py): the index is a
# sorted set of request ids scored by lease expiry (ms), renewed by the owning process;
# each request's hash holds what its settlement needs (and, once it streams content, what
# its bill needs). Expired entries are claimed by the reaper into the reaped set (scored by
# claim time) until their records are written.
LIVE_INDEX = KeyPattern("live_index", "live", "requests in flight, by lease expiry")
LIVE = KeyPattern("live", "live:{request_id}", "one request in flight: its settlement and bill")
REAPED = KeyPattern("reaped", "reaped", "requests claimed by the reaper, by claim time")

ALL: tuple[KeyPattern, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, KeyPattern)
)


def lua_prelude() -> str:
    """The key functions every gateway script starts with (the prefix is ARGV[1])."""
    lines = ["-- Fast-state keys, generated from infra/fastkeys.py.", "local KP = ARGV[1]"]
    lines += [pattern.lua() for pattern in ALL]
    return "\n".join(lines) + "\n"
