"""The accounts admin as staff use it: labels that read right, memberships added without
typing timestamps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import OrganizationMember
from tests.ops.conftest import staff_client, staff_user  # noqa: F401  (shared fixtures)

pytestmark = pytest.mark.django_db


def test_the_admin_index_names_every_model_in_plain_english(staff_client):  # noqa: F811
    page = staff_client.get("/admin/").content.decode()

    for label in ["Model access policies", "Ledger entries", "Model aliases", "API keys", "Customer users",
                  "Staff accounts"]:
        assert f">{label}<" in page, label
    for wrong in ["policys", "entrys", "aliass", "Api keys"]:
        assert wrong not in page, wrong
    # Staff and customers are two kinds of user, in two sections that say which is which.
    assert page.count(">Users<") == 1 and page.count(">Customer users<") == 1


def test_staff_add_a_membership_with_org_user_and_role_only(staff_client, alice, bob_org):  # noqa: F811
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


def test_staff_add_a_member_from_the_organization_page(staff_client, alice, bob, bob_org):  # noqa: F811
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
