"""Account rules: provisioning, profile edits, plan periods and entitlements, audit."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from accounts.entitlement import PlanEntitlement
from accounts.models import (
    AuditEvent,
    Organization,
    OrganizationMember,
    Plan,
    PlanSubscription,
    User,
)
from accounts.selectors import active_subscriptions
from portal.errors import PortalError

PERIOD_LENGTH = timedelta(days=7)


@dataclass(frozen=True)
class Identity:
    """A verified identity from a dashboard bearer token."""

    provider: str
    subject: str
    email: str = ""
    name: str = ""


def period_containing(*, now: datetime) -> tuple[datetime, datetime]:
    """The weekly allowance period [start, end) holding `now`: Monday 00:00 UTC onwards."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=day.weekday())
    return start, start + PERIOD_LENGTH


def subscription_period(
    *, subscription: PlanSubscription, now: datetime
) -> tuple[datetime, datetime]:
    """The period `now` counts in for a subscription: its stored period while `now` is in
    it, else the weekly period holding `now` (a period the scheduler has not rolled yet)."""
    start, end = subscription.current_period_start, subscription.current_period_end
    if not start <= now < end:
        start, end = period_containing(now=now)
    return start, end


def default_plan() -> Plan:
    plan = Plan.objects.filter(is_default=True).order_by("id").first()
    if plan is None:
        plan = Plan.objects.filter(code="free").first()
    if plan is None:
        raise PortalError("internal_error", "No default plan is configured.")
    return plan


def _slug_from(text: str) -> str:
    """A URL-safe slug from `text` with a random tail, so two orgs of one name never collide."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "org"
    return f"{base}-{secrets.token_hex(3)}"


def _slug_for(identity: Identity) -> str:
    return _slug_from(identity.email.split("@")[0] if identity.email else identity.subject)


def user_get_or_provision(*, identity: Identity, now: datetime) -> User:
    """The user for `identity`, created with a personal org on the default plan on first sight.

    Safe under concurrent first requests: the unique (provider, subject) constraint
    lets exactly one creator win; the others read the winner's row.
    """
    user = User.objects.filter(auth_provider=identity.provider, subject=identity.subject).first()
    if user is not None:
        if _snapshot_changed(user, identity):
            _refresh_snapshot(user=user, identity=identity, now=now)
        return user
    try:
        with transaction.atomic():
            user = User.objects.create(
                auth_provider=identity.provider,
                subject=identity.subject,
                email=identity.email,
                display_name=identity.name,
                created_at=now,
                updated_at=now,
            )
            _create_personal_org(user=user, now=now)
            return user
    except IntegrityError:
        return User.objects.get(auth_provider=identity.provider, subject=identity.subject)


def _snapshot_changed(user: User, identity: Identity) -> bool:
    return bool(identity.email) and identity.email != user.email


def _refresh_snapshot(*, user: User, identity: Identity, now: datetime) -> None:
    User.objects.filter(pk=user.pk).update(email=identity.email, updated_at=now)
    user.email = identity.email


def _org_insert(
    *, name: str, slug: str, plan: Plan, now: datetime, personal_for: User | None = None
) -> Organization:
    """An active org with its active subscription to `plan` for the period holding `now`.

    Every org starts here (sign-up and staff alike), so none exists without a plan.
    """
    org = Organization.objects.create(
        name=name, slug=slug, personal_for=personal_for, created_at=now, updated_at=now
    )
    start, end = period_containing(now=now)
    PlanSubscription.objects.create(
        org=org,
        plan=plan,
        current_period_start=start,
        current_period_end=end,
        created_at=now,
    )
    return org


def _create_personal_org(*, user: User, now: datetime) -> Organization:
    label = user.display_name or user.email or "Personal"
    org = _org_insert(
        name=f"{label}'s organization"[:200],
        slug=_slug_for(Identity(user.auth_provider, user.subject, user.email)),
        plan=default_plan(),
        now=now,
        personal_for=user,
    )
    OrganizationMember.objects.create(
        org=org, user=user, role=OrganizationMember.Role.OWNER, created_at=now
    )
    return org


@transaction.atomic
def org_create(
    *,
    name: str,
    actor: object,
    now: datetime,
    plan: Plan | None = None,
    slug: str = "",
    reason: str = "",
) -> Organization:
    """A team org created by staff: active, on `plan` (the default plan when None), audited.

    It starts without members (staff add them alongside); a blank `slug` is made from the name.
    """
    plan = plan or default_plan()
    org = _org_insert(name=name, slug=slug or _slug_from(name), plan=plan, now=now)
    audit_record(
        actor=actor,
        action="org.create",
        target_type="organization",
        target_id=org.pk,
        org=org,
        reason=reason,
        after={"name": org.name, "slug": org.slug, "plan": plan.code},
        now=now,
    )
    return org


def user_update_profile(*, user: User, display_name: str, now: datetime) -> User:
    user.display_name = display_name
    user.updated_at = now
    user.save(update_fields=["display_name", "updated_at"])
    return user


def plan_allows_model(
    *, plan: Plan, model_name: str, allowed_names: frozenset[str] | None = None
) -> bool:
    """Whether `plan` is entitled to the canonical model `model_name` (PlanEntitlement's rule)."""
    if allowed_names is None:
        return PlanEntitlement.of(plan).allows(model_name)
    return PlanEntitlement(all_models=plan.all_models, models=allowed_names).allows(model_name)


def audit_record(
    *,
    actor: object,
    action: str,
    target_type: str,
    target_id: object,
    org: Organization | None = None,
    reason: str = "",
    before: dict | None = None,
    after: dict | None = None,
    now: datetime,
) -> AuditEvent:
    """Write one audit row. `actor` is a portal User, a staff `auth.User`, or None for the system."""
    if isinstance(actor, User):
        actor_type, actor_id, label = "user", str(actor.pk), str(actor)
    elif actor is None:
        actor_type, actor_id, label = "system", "", "system"
    else:
        actor_type = "staff"
        actor_id = str(getattr(actor, "pk", ""))
        label = getattr(actor, "get_username", lambda: str(actor))()
    return AuditEvent.objects.create(
        actor_type=actor_type,
        actor_id=actor_id,
        actor_label=label,
        org=org,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        reason=reason,
        before=before,
        after=after,
        created_at=now,
    )


@transaction.atomic
def org_member_add(
    *, org: Organization, user: User, role: str, actor: object, now: datetime, reason: str = ""
) -> OrganizationMember:
    """Make `user` a member of `org` with `role` (an existing member gets the role); idempotent."""
    membership, created = OrganizationMember.objects.select_for_update().get_or_create(
        org=org, user=user, defaults={"role": role, "created_at": now}
    )
    if not created and membership.role == role:
        return membership
    before = None if created else {"role": membership.role}
    if not created:
        membership.role = role
        membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="org.member_add" if created else "org.member_role",
        target_type="organization",
        target_id=org.pk,
        org=org,
        reason=reason,
        before=before,
        after={"user": str(user), "role": role},
        now=now,
    )
    return membership


@transaction.atomic
def org_change_plan(
    *, org: Organization, plan: Plan, actor: object, now: datetime, reason: str = ""
) -> PlanSubscription:
    """Move `org` to `plan`; the gateway applies the new limits on the next request."""
    from accounts.invalidation import org_changed_on_commit

    sub = active_subscriptions().select_for_update().filter(org=org).first()
    before = {"plan": sub.plan.code if sub else None}
    if sub is not None and sub.plan_id == plan.pk:
        return sub
    if sub is not None:
        sub.plan = plan
        sub.save(update_fields=["plan"])
    else:
        start, end = period_containing(now=now)
        sub = PlanSubscription.objects.create(
            org=org, plan=plan, current_period_start=start, current_period_end=end, created_at=now
        )
    org_changed_on_commit(org.pk)
    audit_record(
        actor=actor,
        action="org.change_plan",
        target_type="organization",
        target_id=org.pk,
        org=org,
        reason=reason,
        before=before,
        after={"plan": plan.code},
        now=now,
    )
    return sub


# Account states. A paused org is held for a while (an unpaid invoice), a disabled one is
# shut (abuse, a closed account); the gateway refuses both (`account_paused`,
# `account_disabled`) while the org's dashboard stays readable. Each control moves from
# the states listed, so a pause never softens a disable and a disable is lifted only by
# "enable", never by a resume meant for a pause.
_ORG_CONTROLS = {
    "org.pause": (Organization.Status.PAUSED, {Organization.Status.ACTIVE}),
    "org.resume": (Organization.Status.ACTIVE, {Organization.Status.PAUSED}),
    "org.disable": (
        Organization.Status.DISABLED,
        {Organization.Status.ACTIVE, Organization.Status.PAUSED},
    ),
    "org.enable": (Organization.Status.ACTIVE, {Organization.Status.DISABLED}),
}


@transaction.atomic
def _org_set_status(*, org: Organization, action: str, actor: object, reason: str, now: datetime):
    from accounts.invalidation import org_changed_on_commit

    status, sources = _ORG_CONTROLS[action]
    locked = Organization.objects.select_for_update().get(pk=org.pk)
    if locked.status == status:
        return locked  # idempotent: nothing changed, nothing to audit
    if locked.status not in sources:
        raise PortalError(
            "invalid_request_error",
            f"{locked.name} is {locked.status}: {action.split('.')[1]} applies to "
            f"{' or '.join(sorted(sources))} organizations only.",
            status=409,
        )
    before = {"status": locked.status}
    locked.status = status
    locked.updated_at = now
    locked.save(update_fields=["status", "updated_at"])
    org_changed_on_commit(locked.pk)  # every gateway process reloads on its next request
    audit_record(
        actor=actor,
        action=action,
        target_type="organization",
        target_id=locked.pk,
        org=locked,
        reason=reason,
        before=before,
        after={"status": status},
        now=now,
    )
    return locked


def org_pause(*, org: Organization, actor: object, reason: str, now: datetime) -> Organization:
    """Refuse the org's gateway requests (`account_paused`) from the next request on."""
    return _org_set_status(org=org, action="org.pause", actor=actor, reason=reason, now=now)


def org_resume(*, org: Organization, actor: object, reason: str, now: datetime) -> Organization:
    """Serve a paused org again from the next request on (a disabled one needs `org_enable`)."""
    return _org_set_status(org=org, action="org.resume", actor=actor, reason=reason, now=now)


def org_disable(*, org: Organization, actor: object, reason: str, now: datetime) -> Organization:
    """Refuse every key of the org (`account_disabled`) from the next request in every gateway
    process, until `org_enable`; members still read the org's dashboard (keys, usage)."""
    return _org_set_status(org=org, action="org.disable", actor=actor, reason=reason, now=now)


def org_enable(*, org: Organization, actor: object, reason: str, now: datetime) -> Organization:
    """Serve a disabled org again from the next request on."""
    return _org_set_status(org=org, action="org.enable", actor=actor, reason=reason, now=now)


@transaction.atomic
def subscription_advance_period(
    *, subscription: PlanSubscription, now: datetime
) -> PlanSubscription:
    """Move an ended allowance period forward to the one holding `now`, in whole periods from its end.

    A no-op while the period is current; the gateway picks up the new period on its next request.
    """
    from accounts.invalidation import org_changed_on_commit

    sub = PlanSubscription.objects.select_for_update().get(pk=subscription.pk)
    if now < sub.current_period_end:
        return sub
    skipped = (now - sub.current_period_end) // PERIOD_LENGTH
    sub.current_period_start = sub.current_period_end + skipped * PERIOD_LENGTH
    sub.current_period_end = sub.current_period_start + PERIOD_LENGTH
    sub.save(update_fields=["current_period_start", "current_period_end"])
    org_changed_on_commit(sub.org_id)
    return sub
