"""An org's allowance as the dashboard shows it: limits, used, remaining, resets."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from django.db.models import Min

from accounts.limits import org_limits
from accounts.models import Organization, PlanSubscription
from accounts.selectors import active_subscription
from metering.models import UsageEvent
from metering.quotas import current_period
from metering.selectors import org_usage_between

NEAR_LIMIT_SHARE = 0.8


def _meter(limit: int, used: int) -> dict:
    return {"limit": limit, "used": used, "remaining": max(limit - used, 0)}


def _allowance(*, org: Organization, sub: PlanSubscription, now: datetime) -> dict:
    plan = org_limits(plan=sub.plan, org=org)  # the plan's, with the org's overrides
    start, end = current_period(subscription=sub, now=now)
    period = org_usage_between(org=org, start=start, end=end)
    window_start = now - timedelta(seconds=plan.window_seconds)
    window_end = now + timedelta(microseconds=1)
    window = org_usage_between(org=org, start=window_start, end=window_end)
    oldest = UsageEvent.objects.filter(
        org=org, created_at__gte=window_start, created_at__lt=window_end
    ).aggregate(at=Min("created_at"))["at"]
    requests = _meter(plan.weekly_requests, period.requests)
    tokens = _meter(plan.weekly_tokens, period.tokens)
    near = any(
        m["limit"] and m["used"] >= NEAR_LIMIT_SHARE * m["limit"] for m in (requests, tokens)
    ) or (plan.window_requests and window.requests >= NEAR_LIMIT_SHARE * plan.window_requests)
    return {
        # The limits in force: the plan's, with this organization's overrides.
        "limits": asdict(plan),
        "period": {"start": start, "end": end},
        "allowance": {"requests": requests, "tokens": tokens},
        "window": {
            "seconds": plan.window_seconds,
            **_meter(plan.window_requests, window.requests),
            "resets_at": oldest + timedelta(seconds=plan.window_seconds) if oldest else None,
        },
        "resets_at": end,
        "near_limit": bool(near),
        "exhausted": requests["remaining"] == 0 or tokens["remaining"] == 0,
    }


def org_allowance(*, org: Organization, now: datetime) -> dict:
    return _allowance(org=org, sub=active_subscription(org=org), now=now)


def usage_summary(*, org: Organization, now: datetime) -> dict:
    """The web app's allowance card: plan, limits, used, remaining, reset times, near-limit flag."""
    sub = active_subscription(org=org)
    allowance = _allowance(org=org, sub=sub, now=now)
    meters = allowance["allowance"]
    return {
        "org_id": org.pk,
        "plan": {"code": sub.plan.code, "name": sub.plan.name},
        "period": allowance["period"],
        **{
            field: {name: meters[name][part] for name in ("requests", "tokens")}
            for field, part in (("limits", "limit"), ("used", "used"), ("remaining", "remaining"))
        },
        "window": allowance["window"],
        "resets_at": allowance["resets_at"],
        "near_limit": allowance["near_limit"],
        "exhausted": allowance["exhausted"],
    }
