"""An org's allowance as the dashboard shows it: limits, used, remaining, resets."""

from __future__ import annotations

from datetime import datetime, timedelta

from accounts.models import Organization
from accounts.selectors import active_subscription
from accounts.services import period_containing
from metering.selectors import org_usage_between

NEAR_LIMIT_SHARE = 0.8


def _meter(limit: int, used: int) -> dict:
    return {"limit": limit, "used": used, "remaining": max(limit - used, 0)}


def org_allowance(*, org: Organization, now: datetime) -> dict:
    sub = active_subscription(org=org)
    plan = sub.plan
    start, end = sub.current_period_start, sub.current_period_end
    if not start <= now < end:
        start, end = period_containing(now=now)
    period = org_usage_between(org=org, start=start, end=end)
    window_start = now - timedelta(seconds=plan.window_seconds)
    window = org_usage_between(org=org, start=window_start, end=now + timedelta(microseconds=1))
    requests = _meter(plan.weekly_requests, period.requests)
    tokens = _meter(plan.weekly_tokens, period.tokens)
    near = any(
        m["limit"] and m["used"] >= NEAR_LIMIT_SHARE * m["limit"] for m in (requests, tokens)
    ) or (plan.window_requests and window.requests >= NEAR_LIMIT_SHARE * plan.window_requests)
    return {
        "period": {"start": start, "end": end},
        "allowance": {"requests": requests, "tokens": tokens},
        "window": {
            "seconds": plan.window_seconds,
            **_meter(plan.window_requests, window.requests),
        },
        "resets_at": end,
        "near_limit": bool(near),
        "exhausted": requests["remaining"] == 0 or tokens["remaining"] == 0,
    }
