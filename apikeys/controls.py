"""A key's own controls: limits (each at most its organization's), a budget, an IP
allowlist. Checked here when an owner sets them; enforced by admission through the key's
auth context (apikeys.authcontext, gateway/lua/admit.lua)."""

from __future__ import annotations

from datetime import datetime

from accounts.limits import org_limits
from accounts.models import Organization
from accounts.selectors import active_subscription
from accounts.services import subscription_period
from apikeys.budgets import MAX_AMOUNT, period_bounds
from apikeys.models import ApiKey, BudgetPeriod
from apikeys.networks import MAX_NETWORKS, parse_networks
from infra.adminactions import provided
from portal.errors import PortalError

LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")
FIELDS = (*LIMIT_FIELDS, "budget_amount", "budget_period", "allowed_ips")


def _invalid(message: str, param: str) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def control_values(*, org: Organization, given: dict, plan_limits=None) -> dict[str, object]:
    """The model fields for the controls in `given` (the API's `limits`, `budget` and
    `allowed_ips`; a control absent is left as it is, null clears it). PortalError (400,
    naming the field) for a value that is not allowed; nothing is changed then."""
    values: dict[str, object] = {}
    if "limits" in given:
        limits = given["limits"] or {}
        cap = plan_limits or org_limits(plan=active_subscription(org=org).plan, org=org)
        for name in LIMIT_FIELDS:
            value = limits.get(name)
            if value is not None and value > getattr(cap, name):
                raise _invalid(
                    f"limits.{name} ({value}) is above the organization's limit of"
                    f" {getattr(cap, name)}; a key's limits can only be lower.",
                    f"limits.{name}",
                )
            values[name] = value
    if "budget" in given:
        budget = given["budget"]
        if budget is None:
            values["budget_amount"], values["budget_period"] = None, ""
        else:
            amount = budget["amount"]
            if not 1 <= amount <= MAX_AMOUNT:
                raise _invalid(
                    f"budget.amount must be between 1 and {MAX_AMOUNT} micro-USD.", "budget.amount"
                )
            values["budget_amount"] = amount
            values["budget_period"] = budget.get("period") or BudgetPeriod.BILLING_PERIOD
    if "allowed_ips" in given:
        networks = given["allowed_ips"]
        if networks:
            if len(networks) > MAX_NETWORKS:
                raise _invalid(f"At most {MAX_NETWORKS} networks.", "allowed_ips")
            try:
                networks = parse_networks(networks)
            except ValueError as exc:
                raise _invalid(str(exc), "allowed_ips") from None
        values["allowed_ips"] = networks or None
    return values


def controls_snapshot(key: ApiKey) -> dict:
    return {name: getattr(key, name) for name in FIELDS}


def limits_of(key: ApiKey) -> dict:
    return {name: getattr(key, name) for name in LIMIT_FIELDS}


def budget_of(key: ApiKey) -> dict | None:
    if key.budget_amount is None:
        return None
    return {"amount": key.budget_amount, "period": key.budget_period}


def spend_of(key: ApiKey, *, now: datetime) -> dict | None:
    """The key's spend in its current budget period (micro-USD billed), or None without
    a budget. Read from the usage events, as billing reads them (metering provides the
    read: apikeys may not import it)."""
    if key.budget_amount is None:
        return None
    billing_start, billing_end = subscription_period(
        subscription=active_subscription(org=key.org), now=now
    )
    start, end = period_bounds(
        period=key.budget_period, now=now, billing_start=billing_start, billing_end=billing_end
    )
    spent = provided("key_spend_between")(org_id=key.org_id, key_id=key.pk, start=start, end=end)
    return {
        "amount": spent,
        "budget": key.budget_amount,
        "remaining": max(key.budget_amount - spent, 0),
        "period_start": start,
        "period_end": end,
    }
