"""The accounts admin as staff use it: labels that read right, memberships added without
typing timestamps, organizations created on a plan like the ones sign-up makes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, Organization, OrganizationMember, Plan, PlanSubscription
from accounts.services import period_containing

pytestmark = pytest.mark.django_db


def test_the_admin_index_names_every_model_in_plain_english(staff_client):
    page = staff_client.get("/admin/").content.decode()

    for label in [
        "Model access policies",
        "Ledger entries",
        "Model aliases",
        "API keys",
        "Customer users",
        "Staff accounts",
    ]:
        assert f">{label}<" in page, label
    for wrong in ["policys", "entrys", "aliass", "Api keys"]:
        assert wrong not in page, wrong
    # Staff and customers are two kinds of user, in two sections that say which is which.
    assert page.count(">Users<") == 1 and page.count(">Customer users<") == 1


def test_staff_add_a_membership_with_org_user_and_role_only(staff_client, alice, bob_org):
    form = staff_client.get("/admin/accounts/organizationmember/add/").content.decode()
    assert 'name="created_at' not in form

    before = timezone.now()
    response = staff_client.post(
        "/admin/accounts/organizationmember/add/",
        {"org": str(bob_org.pk), "user": str(alice.pk), "role": "admin"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    membership = OrganizationMember.objects.get(org=bob_org, user=alice)
    assert membership.role == "admin"
    assert before <= membership.created_at <= timezone.now() + timedelta(seconds=1)


def test_staff_add_a_member_from_the_organization_page(staff_client, alice, bob, bob_org):
    owner = OrganizationMember.objects.get(org=bob_org, user=bob)
    subscription = bob_org.subscriptions.get()
    form = {
        "name": bob_org.name,
        "slug": bob_org.slug,
        "personal_for": str(bob.pk),
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": str(owner.pk),
        "memberships-0-org": str(bob_org.pk),
        "memberships-0-user": str(bob.pk),
        "memberships-0-role": "owner",
        "memberships-1-org": str(bob_org.pk),
        "memberships-1-user": str(alice.pk),
        "memberships-1-role": "member",
        "subscriptions-TOTAL_FORMS": "1",
        "subscriptions-INITIAL_FORMS": "1",
        "subscriptions-0-id": str(subscription.pk),
        "subscriptions-0-org": str(bob_org.pk),
    }

    response = staff_client.post(f"/admin/accounts/organization/{bob_org.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert OrganizationMember.objects.get(org=bob_org, user=alice).role == "member"


ADD_ORG = "/admin/accounts/organization/add/"
NO_MEMBERS = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}


def test_staff_create_an_organization_with_a_name_on_the_free_plan(staff_client):
    form = staff_client.get(ADD_ORG).content.decode()
    for field in ["created_at", "updated_at", "status", "personal_for", "subscriptions-"]:
        assert f'name="{field}' not in form, field
    free = Plan.objects.get(code="free")
    assert f'<option value="{free.pk}" selected>' in form  # the default plan is preselected

    before = timezone.now()
    response = staff_client.post(
        ADD_ORG,
        {
            "name": "Acme Research",
            "slug": "",
            "plan": str(free.pk),
            "reason": "pilot",
            **NO_MEMBERS,
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    org = Organization.objects.get(name="Acme Research")
    assert org.status == "active" and org.personal_for is None
    assert org.slug.startswith("acme-research-")
    assert before <= org.created_at == org.updated_at <= timezone.now()
    subscription = org.subscriptions.get()
    assert subscription.status == PlanSubscription.Status.ACTIVE and subscription.plan == free
    assert (
        subscription.current_period_start,
        subscription.current_period_end,
    ) == period_containing(now=org.created_at)
    event = AuditEvent.objects.get(action="org.create")
    assert (event.actor_type, event.actor_label, event.reason) == ("staff", "ops-staff", "pilot")
    assert event.org == org
    assert event.after == {"name": "Acme Research", "slug": org.slug, "plan": "free"}
    # The list and the org's own page read as for any other org.
    listing = staff_client.get("/admin/accounts/organization/").content.decode()
    assert "Acme Research" in listing and ">Free<" in listing
    assert staff_client.get(f"/admin/accounts/organization/{org.pk}/change/").status_code == 200


def test_an_owner_added_with_the_org_issues_keys_on_its_plan(staff_client, api, alice):
    pro = Plan.objects.get(code="pro")

    response = staff_client.post(
        ADD_ORG,
        {
            "name": "Acme",
            "slug": "acme",
            "plan": str(pro.pk),
            "reason": "",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": str(alice.pk),
            "memberships-0-role": "owner",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    org = Organization.objects.get(slug="acme")
    assert org.subscriptions.get(status=PlanSubscription.Status.ACTIVE).plan == pro
    assert OrganizationMember.objects.get(org=org, user=alice).role == "owner"
    orgs = api.as_user(alice).get("/api/v1/orgs").json()["results"]
    assert {"name": "Acme", "role": "owner", "personal": False}.items() <= next(
        o for o in orgs if o["id"] == str(org.pk)
    ).items()
    created = api.as_user(alice).post(f"/api/v1/orgs/{org.pk}/keys", {"name": "ci"}, format="json")
    assert created.status_code == 201, created.content


def test_a_taken_slug_is_refused_and_nothing_is_created(staff_client, bob_org):
    free = Plan.objects.get(code="free")

    response = staff_client.post(
        ADD_ORG, {"name": "Copy", "slug": bob_org.slug, "plan": str(free.pk), **NO_MEMBERS}
    )

    assert response.status_code == 200
    assert "Organization with this Slug already exists." in response.content.decode()
    assert not Organization.objects.filter(name="Copy").exists()
    assert not AuditEvent.objects.filter(action="org.create").exists()


def test_renaming_an_org_keeps_its_plan_and_moves_updated_at(staff_client, bob, bob_org):
    owner = OrganizationMember.objects.get(org=bob_org, user=bob)
    subscription = bob_org.subscriptions.get()
    created_at, updated_at = bob_org.created_at, bob_org.updated_at
    form = staff_client.get(f"/admin/accounts/organization/{bob_org.pk}/change/").content.decode()
    # The plan changes through the audited "Change plan" action, not this form.
    assert 'name="plan"' not in form and 'name="reason"' not in form

    response = staff_client.post(
        f"/admin/accounts/organization/{bob_org.pk}/change/",
        {
            "name": "Bob & Co",
            "slug": bob_org.slug,
            "personal_for": str(bob.pk),
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(owner.pk),
            "memberships-0-org": str(bob_org.pk),
            "memberships-0-user": str(bob.pk),
            "memberships-0-role": "owner",
            "subscriptions-TOTAL_FORMS": "1",
            "subscriptions-INITIAL_FORMS": "1",
            "subscriptions-0-id": str(subscription.pk),
            "subscriptions-0-org": str(bob_org.pk),
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    bob_org.refresh_from_db()
    assert bob_org.name == "Bob & Co" and bob_org.created_at == created_at
    assert bob_org.updated_at > updated_at
    assert bob_org.subscriptions.get(status=PlanSubscription.Status.ACTIVE) == subscription
