"""Roles in an org: members read keys and the plan; owners and admins manage keys."""

from __future__ import annotations

import pytest

from apikeys.models import ApiKey
from tests.factories.accounts import add_member, make_user
from tests.factories.apikeys import issue_key
from tests.support.errors import assert_stable_error


@pytest.fixture
def carol(db):
    return make_user("carol@example.com", name="Carol")


@pytest.fixture
def team(alice, alice_org, bob, carol):
    """alice owns her org; bob is a member of it, carol an admin."""
    add_member(alice_org, bob, "member")
    add_member(alice_org, carol, "admin")
    return {"owner": alice, "member": bob, "admin": carol}


@pytest.fixture
def key(alice, alice_org):
    return issue_key(alice_org, by=alice, name="shared").key


def org_url(org) -> str:
    return f"/api/v1/orgs/{org.pk}"


READS = {
    "org": lambda c, org, key: c.get(org_url(org)),
    "keys": lambda c, org, key: c.get(f"{org_url(org)}/keys"),
    "key": lambda c, org, key: c.get(f"{org_url(org)}/keys/{key.pk}"),
    "plan": lambda c, org, key: c.get(f"{org_url(org)}/plan"),
    "models": lambda c, org, key: c.get("/api/v1/models", {"org_id": str(org.pk)}),
}

WRITES = {
    "create": lambda c, org, key: c.post(f"{org_url(org)}/keys", {"name": "new"}, format="json"),
    "rename": lambda c, org, key: c.patch(
        f"{org_url(org)}/keys/{key.pk}", {"name": "renamed"}, format="json"
    ),
    "revoke": lambda c, org, key: c.delete(f"{org_url(org)}/keys/{key.pk}"),
    "rotate": lambda c, org, key: c.post(f"{org_url(org)}/keys/{key.pk}/rotate"),
}
WRITE_STATUS = {"create": 201, "rename": 200, "revoke": 200, "rotate": 201}


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
@pytest.mark.parametrize("action", list(READS))
def test_every_role_can_read(api, team, alice_org, key, role, action):
    response = READS[action](api.as_user(team[role]), alice_org, key)

    assert response.status_code == 200, response.content


def test_a_member_sees_their_role(api, team, alice_org):
    body = api.as_user(team["member"]).get(org_url(alice_org)).json()

    assert (body["id"], body["role"], body["personal"]) == (str(alice_org.pk), "member", True)


@pytest.mark.parametrize("action", list(WRITES))
def test_a_member_cannot_manage_keys(api, team, alice_org, key, action):
    response = WRITES[action](api.as_user(team["member"]), alice_org, key)

    assert_stable_error(response, status=403, code="permission_denied", type_="permission_error")
    row = ApiKey.objects.get(pk=key.pk)
    assert (row.status, row.name) == ("active", "shared")
    assert ApiKey.objects.filter(org=alice_org).count() == 1


@pytest.mark.parametrize("role", ["admin", "owner"])
@pytest.mark.parametrize("action", list(WRITES))
def test_admins_and_owners_can_manage_keys(api, team, alice_org, key, role, action):
    response = WRITES[action](api.as_user(team[role]), alice_org, key)

    assert response.status_code == WRITE_STATUS[action], response.content


def test_a_key_created_by_an_admin_records_who_made_it(api, team, alice_org):
    response = api.as_user(team["admin"]).post(
        f"{org_url(alice_org)}/keys", {"name": "ops"}, format="json"
    )

    assert response.json()["created_by"] == str(team["admin"].pk)


def test_membership_in_alices_org_does_not_change_the_compat_routes(api, team, alice_org, key):
    """`/portal/api-keys` is bob's personal org, even though he is a member of alice's."""
    listing = api.as_user(team["member"]).get("/portal/api-keys").json()

    assert listing["count"] == 0
    response = api.as_user(team["member"]).delete(f"/portal/api-keys/{key.pk}")
    assert_stable_error(response, status=404, code="not_found")
