"""Account states through the admin: an organization disabled and enabled (audited, its
generation bumped so every gateway process reloads it, its dashboard still readable), the
controls that do not apply to a state refused, and a disabled user's dashboard token
refused on the next request, with the organizations they leave without an active owner
named to staff. The effect on live gateway processes is in test_account_states_live.py."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.invalidation import read_generations
from accounts.models import AuditEvent, Organization, User
from accounts.privileges import orgs_without_active_owner
from accounts.signing import mint_dev_token
from tests.factories.accounts import add_member, make_user
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

ORG = "accounts.organization"


def staff_rows(**filters) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(actor_type="staff", **filters)
        .order_by("id")
        .values_list("action", "reason", "actor_label", "before", "after")
    )


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def status_of(org) -> str:
    return Organization.objects.get(pk=org.pk).status


def org_generation(org) -> str:
    return read_generations(org_id=org.pk, plan_id=0)[0]


def test_staff_disable_and_enable_an_org_audited_and_applied_on_commit(
    staff_client, alice_org, django_capture_on_commit_callbacks
):
    page = staff_client.action(ORG, "disable_orgs", [alice_org], confirm=False).content.decode()
    assert "403 account_disabled" in page  # the confirmation says what it does

    generation = org_generation(alice_org)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.action(ORG, "disable_orgs", [alice_org], reason="abuse #41")
    assert response.status_code == 302
    assert status_of(alice_org) == "disabled"
    assert org_generation(alice_org) != generation  # every gateway process reloads the org
    assert ("success", "1 organization disabled.") in messages_of(response)

    generation = org_generation(alice_org)
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.action(ORG, "enable_orgs", [alice_org], reason="appeal accepted")
    assert status_of(alice_org) == "active"
    assert org_generation(alice_org) != generation
    assert staff_rows(target_type="organization") == [
        ("org.disable", "abuse #41", "ops-staff", {"status": "active"}, {"status": "disabled"}),
        (
            "org.enable",
            "appeal accepted",
            "ops-staff",
            {"status": "disabled"},
            {"status": "active"},
        ),
    ]


def test_disable_needs_a_reason(staff_client, alice_org):
    url = reverse("admin:accounts_organization_changelist")
    ids = [str(alice_org.pk)]
    page = staff_client.post(
        url, {"action": "disable_orgs", "_selected_action": ids, "confirm": "yes", "reason": " "}
    )
    assert page.status_code == 200 and "This field is required." in page.content.decode()
    assert status_of(alice_org) == "active" and not AuditEvent.objects.exists()


def test_a_paused_org_can_be_disabled_but_a_disabled_one_is_not_paused_or_resumed(
    staff_client, alice_org, bob_org
):
    staff_client.action(ORG, "pause_orgs", [alice_org], reason="unpaid")
    staff_client.action(ORG, "disable_orgs", [alice_org], reason="closed")
    assert status_of(alice_org) == "disabled"

    # A resume (meant for a pause) does not lift a disable, and a pause does not soften it.
    for action in ["resume_orgs", "pause_orgs"]:
        response = staff_client.action(ORG, action, [alice_org, bob_org], reason="oops")
        assert status_of(alice_org) == "disabled", action
        errors = [text for level, text in messages_of(response) if level == "error"]
        assert errors == [
            f"{alice_org.name}: {alice_org.name} is disabled: "
            f"{action.split('_')[0]} applies to "
            f"{'paused' if action == 'resume_orgs' else 'active'} organizations only."
        ]
    # "Enable" is for disabled orgs: a paused one is resumed.
    response = staff_client.action(ORG, "enable_orgs", [bob_org], reason="oops")
    assert status_of(bob_org) == "paused"
    assert "error" in [level for level, _ in messages_of(response)]

    staff_client.action(ORG, "disable_orgs", [alice_org], reason="again")  # idempotent
    assert [a for a, *_ in staff_rows(org=alice_org)] == ["org.pause", "org.disable"]


def test_a_disabled_orgs_dashboard_stays_readable(staff_client, api, alice, alice_org):
    staff_client.action(ORG, "disable_orgs", [alice_org], reason="abuse")
    client = api.as_user(alice)

    orgs = client.get("/api/v1/orgs")
    assert orgs.status_code == 200
    assert next(o for o in orgs.json()["results"] if o["id"] == str(alice_org.pk))["status"] == (
        "disabled"
    )
    for path in ["", "/keys", "/usage", "/plan"]:
        response = client.get(f"/api/v1/orgs/{alice_org.pk}{path}")
        assert response.status_code == 200, (path, response.content[:300])


def test_a_disabled_orgs_keys_are_read_and_revoked_not_created_changed_or_rotated(
    staff_client, api, alice, alice_org
):
    from apikeys.models import ApiKey

    client = api.as_user(alice)
    keys = f"/api/v1/orgs/{alice_org.pk}/keys"
    key = client.post(keys, {"name": "prod"}, format="json").json()
    staff_client.action(ORG, "pause_orgs", [alice_org], reason="unpaid")
    assert client.post(keys, {"name": "while paused"}, format="json").status_code == 201
    staff_client.action(ORG, "disable_orgs", [alice_org], reason="abuse")
    before = list(ApiKey.objects.filter(org=alice_org).values_list("id", "name", "status"))

    refused = [
        client.post(keys, {"name": "new"}, format="json"),
        client.patch(f"{keys}/{key['id']}", {"name": "renamed"}, format="json"),
        client.post(f"{keys}/{key['id']}/rotate"),
    ]

    for response in refused:
        error = assert_stable_error(response, status=403, code="account_disabled")
        assert "revoked" in error["message"]
    assert list(ApiKey.objects.filter(org=alice_org).values_list("id", "name", "status")) == before
    assert client.get(f"{keys}/{key['id']}").status_code == 200
    revoked = client.delete(f"{keys}/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"


def dashboard(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/orgs")


def test_a_disabled_users_dashboard_token_is_refused_on_the_next_request(dev, staff_client):
    token = mint_dev_token(subject="dev|carol@example.com", email="carol@example.com")
    assert dashboard(token).status_code == 200  # provisions carol
    carol = User.objects.get(subject="dev|carol@example.com")

    staff_client.action("accounts.user", "disable_users", [carol], reason="chargeback")
    assert_stable_error(
        dashboard(token), status=403, code="user_disabled", type_="permission_error"
    )

    staff_client.action("accounts.user", "enable_users", [carol], reason="resolved")
    assert dashboard(token).status_code == 200


def test_staff_are_told_which_orgs_a_disabled_user_leaves_without_an_active_owner(
    staff_client, alice, bob, alice_org, bob_org
):
    carol = make_user("carol@example.com")
    add_member(bob_org, alice, "owner")  # bob's org keeps bob as an active owner
    team = Organization.objects.create(
        name="Team Zeta",
        slug="team-zeta",
        created_at=alice_org.created_at,
        updated_at=alice_org.updated_at,
    )
    add_member(team, alice, "owner")
    add_member(team, carol, "owner")  # a co-owner, but disabled below
    add_member(team, bob, "admin")  # an admin is not an owner
    User.objects.filter(pk=carol.pk).update(status=User.Status.DISABLED)
    assert orgs_without_active_owner(alice) == [alice_org, team]

    response = staff_client.action("accounts.user", "disable_users", [alice], reason="left")

    (warning,) = [text for level, text in messages_of(response) if level == "warning"]
    assert warning.startswith("alice@example.com was the only active owner of: ")
    assert ">Alice&#x27;s organization</a>, <a " in warning and ">Team Zeta</a>" in warning
    assert bob_org.name not in warning
    assert reverse("admin:accounts_organization_change", args=[team.pk]) in warning
    assert "keys other members created keep working" in warning
    # The rule changes no organization by itself.
    assert status_of(alice_org) == status_of(team) == "active"


def test_no_warning_when_every_org_keeps_an_active_owner(staff_client, alice, bob, bob_org):
    add_member(bob_org, alice, "owner")  # bob's only org has another active owner

    response = staff_client.action("accounts.user", "disable_users", [bob], reason="left")

    assert User.objects.get(pk=bob.pk).status == "disabled"
    assert [level for level, _ in messages_of(response)] == ["success"]


def test_orgs_are_disabled_not_deleted_in_the_admin(staff_client, alice_org):
    delete = reverse("admin:accounts_organization_delete", args=[alice_org.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:accounts_organization_changelist")
    assert "delete_selected" not in staff_client.get(changelist).content.decode()
    assert Organization.objects.filter(pk=alice_org.pk).exists()


def test_the_org_page_edits_no_state_limit_or_allowance_field(staff_client, alice_org):
    # Each has an audited control: the org actions, accounts.limits' services.
    form = staff_client.get(
        reverse("admin:accounts_organization_change", args=[alice_org.pk])
    ).content.decode()
    for field in [
        "status",
        "requests_per_minute_override",
        "tokens_per_minute_override",
        "weekly_requests_override",
        "weekly_tokens_override",
        "allowance_reset_at",
    ]:
        assert f'name="{field}' not in form, field
