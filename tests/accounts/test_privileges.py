"""Every privilege change staff make in the admin writes an audit row (actor, action,
reason, the changed fields before and after): a customer user's status, memberships and
their roles, a plan's limits and models, a key's deletion. The live effect on a gateway
process is in tests/ops/test_privileges_live.py."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.invalidation import read_generations
from accounts.models import AuditEvent, ModelAccessPolicy, OrganizationMember, Plan, User
from apikeys.models import ApiKey
from apikeys.services import api_key_create
from tests.factories.accounts import plan as make_plan  # loose limits but the given ones

pytestmark = pytest.mark.django_db


def rows(**filters) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(actor_type="staff", **filters)
        .order_by("id")
        .values_list("action", "reason", "before", "after")
    )


def test_user_status_changes_through_audited_actions_only(staff_client, alice):
    change = reverse("admin:accounts_user_change", args=[alice.pk])
    assert 'name="status"' not in staff_client.get(change).content.decode()
    assert (
        staff_client.post(reverse("admin:accounts_user_delete", args=[alice.pk])).status_code == 403
    )

    staff_client.action("accounts.user", "disable_users", [alice], reason="chargeback")
    assert User.objects.get(pk=alice.pk).status == "disabled"
    staff_client.action("accounts.user", "enable_users", [alice], reason="resolved")
    assert rows(target_type="user") == [
        ("user.disable", "chargeback", {"status": "active"}, {"status": "disabled"}),
        ("user.enable", "resolved", {"status": "disabled"}, {"status": "active"}),
    ]


def test_membership_add_role_change_and_removal_are_audited(staff_client, alice, bob_org):
    add = reverse("admin:accounts_organizationmember_add")
    response = staff_client.post(
        add, {"org": str(bob_org.pk), "user": str(alice.pk), "role": "member", "reason": "hired"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    member = OrganizationMember.objects.get(org=bob_org, user=alice)

    change = reverse("admin:accounts_organizationmember_change", args=[member.pk])
    response = staff_client.post(
        change,
        {"org": str(bob_org.pk), "user": str(alice.pk), "role": "owner", "reason": "promoted"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OrganizationMember.objects.get(pk=member.pk).role == "owner"

    delete = reverse("admin:accounts_organizationmember_delete", args=[member.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 302
    assert not OrganizationMember.objects.filter(pk=member.pk).exists()

    who = {"org": str(bob_org.pk), "user": "alice@example.com"}
    assert rows(target_id=str(bob_org.pk)) == [
        ("org.member_add", "hired", None, {**who, "role": "member"}),
        ("org.member_role", "promoted", {**who, "role": "member"}, {**who, "role": "owner"}),
        ("org.member_remove", "", {**who, "role": "owner"}, None),
    ]
    assert AuditEvent.objects.filter(action="org.member_role").get().actor_label == "ops-staff"


def test_a_role_changed_on_the_organization_page_is_audited(staff_client, bob, bob_org):
    owner = OrganizationMember.objects.get(org=bob_org, user=bob)
    subscription = bob_org.subscriptions.get()
    response = staff_client.post(
        reverse("admin:accounts_organization_change", args=[bob_org.pk]),
        {
            "name": bob_org.name,
            "slug": bob_org.slug,
            "personal_for": str(bob.pk),
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(owner.pk),
            "memberships-0-org": str(bob_org.pk),
            "memberships-0-user": str(bob.pk),
            "memberships-0-role": "member",
            "subscriptions-TOTAL_FORMS": "1",
            "subscriptions-INITIAL_FORMS": "1",
            "subscriptions-0-id": str(subscription.pk),
            "subscriptions-0-org": str(bob_org.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    who = {"org": str(bob_org.pk), "user": "bob@example.com"}
    assert rows(action="org.member_role") == [
        ("org.member_role", "", {**who, "role": "owner"}, {**who, "role": "member"})
    ]


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
)


def test_plan_limit_and_model_changes_are_audited_and_applied(
    staff_client, fast_state, django_capture_on_commit_callbacks
):
    plan = make_plan("team", requests_per_minute=60)
    ModelAccessPolicy.objects.create(plan=plan, model_name="model-a")
    policy = plan.model_policies.get()
    generation = read_generations(org_id="none", plan_id=plan.pk)[1]
    form = {name: str(getattr(plan, name)) for name in PLAN_FIELDS}
    form.update(
        {
            "requests_per_minute": "5",
            "all_models": "",  # unchecked
            "reason": "abuse from this tier",
            "model_policies-TOTAL_FORMS": "2",
            "model_policies-INITIAL_FORMS": "1",
            "model_policies-0-id": str(policy.pk),
            "model_policies-0-plan": str(plan.pk),
            "model_policies-0-model_name": "model-a",
            "model_policies-0-DELETE": "on",
            "model_policies-1-plan": str(plan.pk),
            "model_policies-1-model_name": "model-b",
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:accounts_plan_change", args=[plan.pk]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Plan.objects.get(pk=plan.pk).requests_per_minute == 5
    assert rows(target_type="plan") == [
        (
            "plan.update",
            "abuse from this tier",
            {"requests_per_minute": 60, "all_models": True, "models": ["model-a"]},
            {"requests_per_minute": 5, "all_models": False, "models": ["model-b"]},
        )
    ]
    # The gateway reloads the plan on its next request.
    assert read_generations(org_id="none", plan_id=plan.pk)[1] != generation

    # Saving without a change writes nothing.
    unchanged = {**form, "reason": "", "model_policies-TOTAL_FORMS": "1"}
    unchanged.update(
        {
            "requests_per_minute": "5",
            "model_policies-0-id": str(plan.model_policies.get().pk),
            "model_policies-0-model_name": "model-b",
        }
    )
    del unchanged["model_policies-0-DELETE"]
    assert (
        staff_client.post(
            reverse("admin:accounts_plan_change", args=[plan.pk]), unchanged
        ).status_code
        == 302
    )
    assert len(rows(target_type="plan")) == 1


def test_a_plans_models_and_subscriptions_are_not_edited_elsewhere(staff_client):
    assert staff_client.get(reverse("admin:accounts_modelaccesspolicy_add")).status_code == 403
    assert staff_client.get(reverse("admin:accounts_plansubscription_add")).status_code == 403


def test_key_deletion_is_revoke_in_the_admin_and_audited_otherwise(staff_client, alice, alice_org):
    key = api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now()).key
    delete = reverse("admin:apikeys_apikey_delete", args=[key.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()

    ApiKey.objects.filter(pk=key.pk).delete()
    (row,) = AuditEvent.objects.filter(action="api_key.delete")
    assert (row.actor_type, row.target_id) == ("system", str(key.pk))
    assert row.before["org"] == str(alice_org.pk) and row.before["status"] == "active"
