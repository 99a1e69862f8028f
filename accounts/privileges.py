"""Privilege changes staff make in the admin, each audited with before and after and a
reason when staff gave one: a customer user's status, memberships and their roles, a
plan's limits and entitlements (and its deletion), a subscription's allowance period. Each
takes effect on the next gateway request.

The rule for a disabled user: their dashboard tokens are refused (accounts.authentication)
and so are the API keys they created (`ApiKey.created_by`), whatever org holds them, as
`api_key_disabled`; keys other members created keep working (pause or disable the org to
stop it all). Enabling the user serves those keys again, unless a key was itself disabled
or revoked.

When the disabled user was an organization's only active owner, the organization itself
is left as it is: its keys other members (or staff) created keep working, members keep
their roles, and no one can take the owner's part until staff add an owner or disable the
organization. Nothing goes dark by itself: one person leaving must not stop a team's
production keys. The admin lists those organizations when staff disable such a user
(`orgs_without_active_owner`), so the choice is made on purpose.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef

from accounts.models import Organization, OrganizationMember, Plan, PlanSubscription, User
from accounts.services import audit_record
from accounts.signals import user_status_changed


def _user_set_status(
    *, user: User, status: str, actor: object, reason: str, action: str, now: datetime
) -> User:
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.status == status:
        return locked  # idempotent: nothing changed, nothing to audit
    before = {"status": locked.status}
    locked.status = status
    locked.updated_at = now
    locked.save(update_fields=["status", "updated_at"])
    # The keys this user created are refused (or served again) from the next request.
    user_status_changed.send(sender=User, user=locked, status=status)
    audit_record(
        actor=actor,
        action=action,
        target_type="user",
        target_id=locked.pk,
        reason=reason,
        before=before,
        after={"status": status},
        now=now,
    )
    return locked


@transaction.atomic
def user_disable(*, user: User, actor: object, reason: str, now: datetime) -> User:
    """Refuse the user's dashboard tokens and the API keys they created, from the next request."""
    return _user_set_status(
        user=user,
        status=User.Status.DISABLED,
        actor=actor,
        reason=reason,
        action="user.disable",
        now=now,
    )


@transaction.atomic
def user_enable(*, user: User, actor: object, reason: str, now: datetime) -> User:
    return _user_set_status(
        user=user,
        status=User.Status.ACTIVE,
        actor=actor,
        reason=reason,
        action="user.enable",
        now=now,
    )


def orgs_without_active_owner(user: User) -> list[Organization]:
    """The organizations `user` owns with no other owner whose user is active: what disabling
    `user` leaves ownerless (or has left so, once disabled). By name."""
    other_owner = OrganizationMember.objects.filter(
        org=OuterRef("pk"), role=OrganizationMember.Role.OWNER, user__status=User.Status.ACTIVE
    ).exclude(user=user)
    return list(
        Organization.objects.filter(
            memberships__user=user, memberships__role=OrganizationMember.Role.OWNER
        )
        .filter(~Exists(other_owner))
        .order_by("name")
    )


def _member_snapshot(member: OrganizationMember) -> dict:
    return {"org": str(member.org_id), "user": str(member.user), "role": member.role}


@transaction.atomic
def org_member_save(
    *, member: OrganizationMember, actor: object, now: datetime, reason: str = ""
) -> OrganizationMember:
    """Save a membership as staff edited it (new, or a changed role), audited with before/after."""
    before = None
    if member.pk is not None:
        old = OrganizationMember.objects.select_for_update().filter(pk=member.pk).first()
        before = _member_snapshot(old) if old is not None else None
    member.save()
    after = _member_snapshot(member)
    if before != after:
        audit_record(
            actor=actor,
            action="org.member_add" if before is None else "org.member_role",
            target_type="organization",
            target_id=member.org_id,
            org=member.org,
            reason=reason,
            before=before,
            after=after,
            now=now,
        )
    return member


@transaction.atomic
def org_member_remove(
    *, member: OrganizationMember, actor: object, now: datetime, reason: str = ""
) -> None:
    before = _member_snapshot(member)
    org = member.org
    member.delete()
    audit_record(
        actor=actor,
        action="org.member_remove",
        target_type="organization",
        target_id=org.pk,
        org=org,
        reason=reason,
        before=before,
        now=now,
    )


PLAN_FIELDS = (
    "code",
    "name",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_requests",
    "window_requests",
    "window_seconds",
    "weekly_requests",
    "weekly_tokens",
    "max_active_keys",
    "all_models",
    "is_default",
)


def plan_snapshot(plan: Plan) -> dict:
    """A plan's limits and entitlements as the audit log records them."""
    return {
        **{name: getattr(plan, name) for name in PLAN_FIELDS},
        "models": sorted(plan.model_policies.values_list("model_name", flat=True)),
    }


def plan_record_change(
    *, plan: Plan, before: dict | None, actor: object, now: datetime, reason: str = ""
) -> None:
    """After staff saved `plan` (and its model list): audit the changed fields, before and
    after, and apply the new limits and entitlements from the next gateway request."""
    from accounts.invalidation import plan_changed_on_commit

    after = plan_snapshot(plan)
    changed = [name for name in after if before is None or before.get(name) != after[name]]
    if not changed:
        return
    plan_changed_on_commit(plan.pk)
    audit_record(
        actor=actor,
        action="plan.create" if before is None else "plan.update",
        target_type="plan",
        target_id=plan.pk,
        reason=reason,
        before=None if before is None else {name: before.get(name) for name in changed},
        after={name: after[name] for name in changed},
        now=now,
    )


@transaction.atomic
def plan_delete(*, plan: Plan, actor: object, now: datetime, reason: str = "") -> None:
    """Delete a plan no organization is on (subscriptions protect the rest) and its model
    list, audited with what it was; processes holding it drop it on their next request."""
    from accounts.invalidation import plan_changed_on_commit

    before = plan_snapshot(plan)
    plan_id = plan.pk
    plan.delete()
    plan_changed_on_commit(plan_id)
    audit_record(
        actor=actor,
        action="plan.delete",
        target_type="plan",
        target_id=plan_id,
        reason=reason,
        before=before,
        now=now,
    )


SUBSCRIPTION_FIELDS = ("current_period_start", "current_period_end")


def _period(subscription: PlanSubscription) -> dict:
    return {name: getattr(subscription, name).isoformat() for name in SUBSCRIPTION_FIELDS}


@transaction.atomic
def subscription_save(
    *, subscription: PlanSubscription, actor: object, now: datetime, reason: str = ""
) -> PlanSubscription:
    """Save an allowance period as staff edited it: audited with before and after, applied
    from the next gateway request (the org's generation)."""
    from accounts.invalidation import org_changed_on_commit

    before = _period(PlanSubscription.objects.select_for_update().get(pk=subscription.pk))
    subscription.save()
    after = _period(subscription)
    if before != after:
        org_changed_on_commit(subscription.org_id)
        audit_record(
            actor=actor,
            action="subscription.update",
            target_type="subscription",
            target_id=subscription.pk,
            org=subscription.org,
            reason=reason,
            before=before,
            after=after,
            now=now,
        )
    return subscription
