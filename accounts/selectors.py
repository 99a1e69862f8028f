"""Reads other apps and the API layer need; every org lookup is scoped to the caller."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import Organization, OrganizationMember, PlanSubscription, User
from portal.errors import PortalError


def user_memberships(*, user: User) -> QuerySet[OrganizationMember]:
    return (
        OrganizationMember.objects.filter(user=user)
        .select_related("org")
        .order_by("created_at", "id")
    )


def users_with_email(*, provider: str, email: str) -> list[User]:
    """The users of `provider` whose last-seen email is `email` (any case)."""
    return list(
        User.objects.filter(auth_provider=provider, email__iexact=email).order_by("created_at")
    )


def get_membership_or_404(*, user: User, org_id: object) -> OrganizationMember:
    """The caller's membership in `org_id`; another org (or a malformed id) is 404, never 403."""
    try:
        org_uuid = uuid.UUID(str(org_id))
    except ValueError:
        raise PortalError("not_found", "Organization not found.") from None
    membership = (
        OrganizationMember.objects.select_related("org", "user")
        .filter(user=user, org_id=org_uuid)
        .first()
    )
    if membership is None:
        raise PortalError("not_found", "Organization not found.")
    return membership


def personal_membership(*, user: User) -> OrganizationMember:
    membership = (
        OrganizationMember.objects.select_related("org", "user")
        .filter(user=user, org__personal_for=user)
        .first()
    )
    if membership is None:
        raise PortalError("not_found", "You have no personal organization.")
    return membership


def active_subscriptions() -> QuerySet[PlanSubscription]:
    """Every org's current subscription (one per org at most): the one place that says
    what "active" means; callers narrow it (by org, with the plan, locked, as a subquery)."""
    return PlanSubscription.objects.filter(status=PlanSubscription.Status.ACTIVE)


def active_subscription_or_none(*, org_id: object) -> PlanSubscription | None:
    """The org's active subscription with its plan, or None."""
    return active_subscriptions().select_related("plan").filter(org_id=org_id).first()


def active_subscription(*, org: Organization) -> PlanSubscription:
    sub = active_subscription_or_none(org_id=org.pk)
    if sub is None:
        raise PortalError("internal_error", "The organization has no active plan.")
    return sub
