"""One org's data is invisible to everyone outside it: 404, never 403, and nothing changes."""

from __future__ import annotations

import pytest

from apikeys.models import ApiKey
from tests.factories.apikeys import issue_key
from tests.support.errors import assert_stable_error

# (method, path template, JSON body): {org} and {key} are filled in per test.
ORG_ENDPOINTS = [
    ("get", "/api/v1/orgs/{org}", None),
    ("get", "/api/v1/orgs/{org}/keys", None),
    ("post", "/api/v1/orgs/{org}/keys", {"name": "intruder"}),
    ("get", "/api/v1/orgs/{org}/keys/{key}", None),
    ("patch", "/api/v1/orgs/{org}/keys/{key}", {"name": "pwned"}),
    ("patch", "/api/v1/orgs/{org}/keys/{key}", {"allowed_models": None}),
    ("delete", "/api/v1/orgs/{org}/keys/{key}", None),
    ("post", "/api/v1/orgs/{org}/keys/{key}/rotate", None),
    ("get", "/api/v1/orgs/{org}/plan", None),
    ("get", "/api/v1/models?org_id={org}", None),
]
KEY_ENDPOINTS = [e for e in ORG_ENDPOINTS if "{key}" in e[1]]


def endpoint_id(endpoint) -> str:
    method, path, body = endpoint
    return f"{method.upper()} {path}" + (f" {sorted(body)}" if body else "")


def call(client, method, path, body):
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, body, format="json")


@pytest.fixture
def bobs_key(bob, bob_org):
    return issue_key(bob_org, by=bob, name="bob's key", allowed_models=["gemma-4-26b"]).key


def assert_bobs_key_untouched(bobs_key, bob_org):
    row = ApiKey.objects.get(pk=bobs_key.pk)
    assert (row.status, row.name, row.allowed_models) == ("active", "bob's key", ["gemma-4-26b"])
    assert row.revoked_at is None and row.replaced_by_id is None
    assert list(ApiKey.objects.filter(org=bob_org)) == [row]


@pytest.mark.parametrize("endpoint", ORG_ENDPOINTS, ids=endpoint_id)
def test_another_orgs_endpoints_are_404(api, alice, bob_org, bobs_key, endpoint):
    method, path, body = endpoint

    response = call(api.as_user(alice), method, path.format(org=bob_org.pk, key=bobs_key.pk), body)

    assert_stable_error(
        response, status=404, code="not_found", type_="invalid_request_error", param=None
    )
    assert_bobs_key_untouched(bobs_key, bob_org)


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS, ids=endpoint_id)
def test_another_orgs_key_under_your_own_org_is_404(
    api, alice, alice_org, bob_org, bobs_key, endpoint
):
    method, path, body = endpoint

    response = call(
        api.as_user(alice), method, path.format(org=alice_org.pk, key=bobs_key.pk), body
    )

    assert_stable_error(response, status=404, code="not_found", param=None)
    assert_bobs_key_untouched(bobs_key, bob_org)
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_another_users_key_through_the_compat_route_is_404(api, alice, bob_org, bobs_key):
    response = api.as_user(alice).delete(f"/portal/api-keys/{bobs_key.pk}")

    assert_stable_error(response, status=404, code="not_found")
    assert_bobs_key_untouched(bobs_key, bob_org)


def test_404_for_another_org_matches_404_for_no_org(api, alice, bob_org):
    """An outsider cannot tell an existing org from a missing one."""
    client = api.as_user(alice)

    theirs = client.get(f"/api/v1/orgs/{bob_org.pk}").json()
    missing = client.get("/api/v1/orgs/00000000-0000-4000-8000-000000000000").json()

    assert theirs == missing


@pytest.mark.parametrize(
    "bad_id", ["not-a-uuid", "1", "00000000-0000-0000-0000", "%27%20OR%201%3D1"]
)
@pytest.mark.parametrize("endpoint", ORG_ENDPOINTS, ids=endpoint_id)
def test_malformed_org_ids_are_404(api, alice, alice_org, endpoint, bad_id):
    method, path, body = endpoint
    issued = issue_key(alice_org, by=alice)

    response = call(api.as_user(alice), method, path.format(org=bad_id, key=issued.key.pk), body)

    assert_stable_error(response, status=404, code="not_found")


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "00000000-0000-0000-0000"])
@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS, ids=endpoint_id)
def test_malformed_key_ids_are_404(api, alice, alice_org, endpoint, bad_id):
    method, path, body = endpoint

    response = call(api.as_user(alice), method, path.format(org=alice_org.pk, key=bad_id), body)

    assert_stable_error(response, status=404, code="not_found")


def test_malformed_key_id_on_the_compat_route_is_404(api, alice):
    response = api.as_user(alice).delete("/portal/api-keys/not-a-uuid")

    assert_stable_error(response, status=404, code="not_found")


UNAUTHENTICATED_ENDPOINTS = [
    ("get", "/api/v1/me", None),
    ("patch", "/api/v1/me", {"display_name": "x"}),
    ("get", "/api/v1/orgs", None),
    *ORG_ENDPOINTS,
    ("get", "/api/v1/models", None),
    ("get", "/portal/api-keys", None),
    ("post", "/portal/api-keys", {"name": "anon"}),
    ("delete", "/portal/api-keys/{key}", None),
]


@pytest.mark.parametrize("endpoint", UNAUTHENTICATED_ENDPOINTS, ids=endpoint_id)
def test_unauthenticated_requests_are_401(api, alice_org, bob_org, bobs_key, endpoint):
    method, path, body = endpoint

    response = call(api, method, path.format(org=bob_org.pk, key=bobs_key.pk), body)

    assert_stable_error(
        response, status=401, code="not_authenticated", type_="authentication_error"
    )
    assert response["www-authenticate"].lower().startswith("bearer")
    assert_bobs_key_untouched(bobs_key, bob_org)
    assert not ApiKey.objects.filter(org=alice_org).exists()
