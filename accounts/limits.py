"""An organization's limits: its plan's, with the staff overrides for that organization,
and the allowance period its usage counts in (a one-off reset starts it anew).

The one home of these rules: the gateway's auth context (apikeys.authcontext), the
allowance counters (metering.quotas) and the dashboard read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from django.db import transaction

from accounts.invalidation import org_changed_on_commit
from accounts.models import Organization, Plan
from accounts.services import audit_record


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """The limits admission enforces for an organization (and, per key, at most these)."""

    requests_per_minute: int
    tokens_per_minute: int
    concurrent_requests: int
    window_requests: int
    window_seconds: int
    weekly_requests: int
    weekly_tokens: int

    @property
    def window_bucket_seconds(self) -> int:
        """The short window's bucket (a sixtieth of it, at least a second): admit.lua's `wb`."""
        return max(1, self.window_seconds // 60)


# The limits staff may override per organization: (the plan's field, the override's field).
OVERRIDABLE = {
    "requests_per_minute": "requests_per_minute_override",
    "tokens_per_minute": "tokens_per_minute_override",
    "weekly_requests": "weekly_requests_override",
    "weekly_tokens": "weekly_tokens_override",
}


def org_limits(*, plan: Plan, org: Organization) -> PlanLimits:
    """The plan's limits with the organization's overrides in place of the plan's values."""
    values = {field.name: getattr(plan, field.name) for field in fields(PlanLimits)}
    for name, override_field in OVERRIDABLE.items():
        override = getattr(org, override_field)
        if override is not None:
            values[name] = override
    return PlanLimits(**values)


def allowance_period(
    *, org: Organization, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The stretch of the period [start, end) whose usage counts against the allowance: from
    the organization's one-off reset when it falls inside the period, else the whole period.
    The allowance counter is keyed by this start, so a reset starts a new counter."""
    reset = org.allowance_reset_at
    if reset is not None and start <= reset < end:
        return reset, end
    return start, end


def _overrides(org: Organization) -> dict:
    return {field: getattr(org, field) for field in OVERRIDABLE.values()}


@transaction.atomic
def org_set_limit_override(
    *, org: Organization, actor: object, reason: str, now: datetime, **overrides: int | None
) -> Organization:
    """Set (an int) or clear (None) the organization's overrides of its plan's limits, named
    as in OVERRIDABLE. Audited; every gateway process reads them on its next request."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"not an overridable limit: {', '.join(sorted(unknown))}")
    locked = Organization.objects.select_for_update().get(pk=org.pk)
    before = _overrides(locked)
    for name, value in overrides.items():
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"{name} must be a positive integer or None")
        setattr(locked, OVERRIDABLE[name], value)
    after = _overrides(locked)
    if after == before:
        return locked
    locked.updated_at = now
    locked.save(update_fields=[*OVERRIDABLE.values(), "updated_at"])
    org_changed_on_commit(locked.pk)
    audit_record(
        actor=actor,
        action="org.limits_override",
        target_type="organization",
        target_id=locked.pk,
        org=locked,
        reason=reason,
        before=before,
        after=after,
        now=now,
    )
    return locked


@transaction.atomic
def org_reset_allowance(
    *, org: Organization, actor: object, reason: str, now: datetime
) -> Organization:
    """A one-off reset of the organization's allowance: usage before `now` no longer counts
    against this period's allowance (the counter starts again at zero on the next request).
    Billing is unchanged: every request served is still billed."""
    locked = Organization.objects.select_for_update().get(pk=org.pk)
    before = {"allowance_reset_at": _iso(locked.allowance_reset_at)}
    locked.allowance_reset_at = now
    locked.updated_at = now
    locked.save(update_fields=["allowance_reset_at", "updated_at"])
    org_changed_on_commit(locked.pk)
    audit_record(
        actor=actor,
        action="org.allowance_reset",
        target_type="organization",
        target_id=locked.pk,
        org=locked,
        reason=reason,
        before=before,
        after={"allowance_reset_at": _iso(now)},
        now=now,
    )
    return locked


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
