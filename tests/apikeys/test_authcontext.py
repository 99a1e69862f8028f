"""The auth context: its wire format (what admit.lua reads) and the rules it answers."""

from __future__ import annotations

import dataclasses
import json

from accounts.entitlement import PlanEntitlement
from apikeys.authcontext import KEY_REFUSALS, AuthContext, KeyLimits, PlanLimits
from apikeys.budgets import KeyBudget

NOW = 1_800_000_000_000

CTX = AuthContext(
    key_id="key1",
    org_id="org1",
    key_status="active",
    key_expires_ms=0,
    key_models=None,
    org_status="active",
    key_generation="kg",
    org_generation="og",
    plan_generation="pg",
    period_start_ms=NOW - 1000,
    period_end_ms=NOW + 1000,
    plan_id=7,
    plan_code="pro",
    limits=PlanLimits(
        requests_per_minute=60,
        tokens_per_minute=1000,
        concurrent_requests=2,
        window_requests=100,
        window_seconds=300,
        weekly_requests=1000,
        weekly_tokens=10**6,
    ),
    entitlement=PlanEntitlement(all_models=False, models=frozenset({"a", "b"})),
)


def test_the_wire_format_is_the_compact_json_admit_lua_reads():
    wire = json.loads(CTX.to_json())
    assert wire == {
        "k": "key1", "o": "org1", "ks": "active", "kx": 0, "am": None, "os": "active",
        "kg": "kg", "og": "og", "pg": "pg", "ps": NOW - 1000, "pe": NOW + 1000,
        "p": {"id": 7, "code": "pro", "rpm": 60, "tpm": 1000, "cc": 2, "wr": 100, "ws": 300,
              "qr": 1000, "qt": 10**6, "all": False, "m": ["a", "b"]},
        "kl": None, "b": None, "ip": None, "ipw": None,
    }  # fmt: skip
    assert " " not in CTX.to_json()
    assert AuthContext.from_json(CTX.to_json()) == CTX


def test_a_keys_controls_go_on_the_wire():
    ctx = dataclasses.replace(
        CTX,
        key_limits=KeyLimits(2, 500, 1),
        budget=KeyBudget(amount=5000, period="day", start_ms=NOW - 10, end_ms=NOW + 10),
        allowed_ips=("203.0.113.0/24", "2001:db8::/32"),
    )
    wire = json.loads(ctx.to_json())
    assert wire["kl"] == [2, 500, 1]
    assert wire["b"] == {"a": 5000, "pd": "day", "s": NOW - 10, "e": NOW + 10}
    assert wire["ip"] == ["203.0.113.0/24", "2001:db8::/32"]
    # IPv4 as IPv4-mapped IPv6 (prefix + 96), IPv6 as is: 32 hex digits each.
    assert wire["ipw"] == [["00000000000000000000ffffcb007100", 120], ["20010db8" + "0" * 24, 32]]
    assert AuthContext.from_json(ctx.to_json()) == ctx
    assert ctx.ip_allowed("203.0.113.7") and ctx.ip_allowed("2001:db8::1")
    assert not ctx.ip_allowed("203.0.114.1") and not ctx.ip_allowed(None)
    assert CTX.ip_allowed(None)  # no allowlist: from anywhere


def test_a_usable_key_has_no_refusal():
    assert CTX.refusal(now_ms=NOW) is None


def test_the_first_refusal_in_admission_order_wins():
    # Every fault at once, then taken away one by one from the front: each time the next
    # status in KEY_REFUSALS answers.
    faults = [
        {"key_status": "revoked"},
        {"key_status": "disabled"},
        {"key_expires_ms": NOW},
        {"org_status": "paused"},
        {"org_status": "disabled"},
    ]
    seen = []
    for i in range(len(faults)):
        changes = {}
        for fault in reversed(faults[i:]):
            changes.update(fault)
        seen.append(dataclasses.replace(CTX, **changes).refusal(now_ms=NOW))
    assert seen == list(KEY_REFUSALS)


def test_any_org_status_but_active_refuses():
    assert dataclasses.replace(CTX, org_status="closed").refusal(now_ms=NOW) == "org_disabled"


def test_a_key_expires_at_its_instant():
    expiring = dataclasses.replace(CTX, key_expires_ms=NOW + 1)
    assert expiring.refusal(now_ms=NOW) is None
    assert expiring.refusal(now_ms=NOW + 1) == "expired"


def test_entitlement_is_the_plan_narrowed_by_the_key():
    assert CTX.allows("a") and not CTX.allows("c")
    narrowed = dataclasses.replace(CTX, key_models=frozenset({"b", "c"}))
    assert [narrowed.allows(m) for m in ("a", "b", "c")] == [False, True, False]
    everything = dataclasses.replace(CTX, entitlement=PlanEntitlement(all_models=True))
    assert everything.allows("c")
    assert not dataclasses.replace(everything, key_models=frozenset({"a"})).allows("c")
