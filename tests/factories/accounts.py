"""Users, orgs, memberships, plans and subscriptions for tests, made through the services."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import OrganizationMember, Plan, PlanSubscription, User
from accounts.plan_defaults import ensure_default_plans
from accounts.services import Identity, user_get_or_provision

# Generous limits: a test names only the limit it is about (`plan(requests_per_minute=3)`).
LOOSE_LIMITS = {
    "requests_per_minute": 10_000,
    "tokens_per_minute": 100_000_000,
    "concurrent_requests": 500,
    "window_requests": 100_000,
    "window_seconds": 300,
    "weekly_requests": 1_000_000,
    "weekly_tokens": 1_000_000_000,
    "max_active_keys": 50,
}


def make_user(email: str, *, subject: str | None = None, name: str = "") -> User:
    """A user with a personal org on the free plan, as the first dashboard request makes one."""
    identity = Identity(provider="dev", subject=subject or f"user_{email}", email=email, name=name)
    return user_get_or_provision(identity=identity, now=timezone.now())


def add_member(org, user, role: str) -> OrganizationMember:
    return OrganizationMember.objects.create(
        org=org, user=user, role=role, created_at=timezone.now()
    )


def ensure_seed_plans() -> None:
    """Put back the migration-seeded plans when a transactional test's flush removed them."""
    ensure_default_plans(Plan)


def plan(code: str = "e2e", **limits) -> Plan:
    """A plan with loose limits except the ones given (`requests_per_minute=3`, ...)."""
    fields = {**LOOSE_LIMITS, **limits}
    return Plan.objects.create(code=code, name=code.title(), all_models=True, **fields)


def make_plan(code: str, **fields) -> Plan:
    """A plan with modest limits (a few requests a minute, thousands a week), all models."""
    defaults = {
        "name": code.title(),
        "requests_per_minute": 60,
        "tokens_per_minute": 100_000,
        "concurrent_requests": 5,
        "window_requests": 1_000,
        "window_seconds": 300,
        "weekly_requests": 10_000,
        "weekly_tokens": 1_000_000,
        "max_active_keys": 5,
        "all_models": True,
    }
    return Plan.objects.create(code=code, **{**defaults, **fields})


def subscription(org) -> PlanSubscription:
    """`org`'s active subscription, its plan loaded."""
    return PlanSubscription.objects.select_related("plan").get(org=org, status="active")


def subscribe(org, plan: Plan) -> PlanSubscription:
    """Move `org`'s active subscription onto `plan` in place (no period change, no audit)."""
    sub = subscription(org)
    sub.plan = plan
    sub.save(update_fields=["plan"])
    return sub
