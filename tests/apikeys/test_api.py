"""The key endpoints over HTTP, as the web app uses them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys import material
from apikeys.models import ApiKey
from tests.factories.apikeys import issue_key
from tests.support.errors import assert_stable_error


def keys_url(org) -> str:
    return f"/api/v1/orgs/{org.pk}/keys"


def key_url(org, key_id) -> str:
    return f"{keys_url(org)}/{key_id}"


def assert_no_secret(response, *plaintexts: str) -> None:
    text = response.content.decode()
    assert "key_hash" not in text
    for plaintext in plaintexts:
        assert plaintext[len("ctr_live_") :] not in text
        assert material.hash_secret(plaintext) not in text


@pytest.fixture
def client(api, alice):
    return api.as_user(alice)


# --- create, read ------------------------------------------------------------------


def test_create_answers_201_with_the_plaintext_key(client, alice_org):
    response = client.post(keys_url(alice_org), {"name": "ci"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert material.looks_like_key(body["key"])
    assert body["name"] == "ci"
    assert body["status"] == "active"
    assert body["prefix"] == body["key"][:13]
    assert body["last_four"] == body["key"][-4:]
    assert "key_hash" not in body
    assert ApiKey.objects.get(pk=body["id"]).key_hash == material.hash_secret(body["key"])


def test_create_with_allowed_models_and_expiry(client, alice_org):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    response = client.post(
        keys_url(alice_org),
        {"name": "ci", "allowed_models": ["gemma-4-26b"], "expires_at": expires.isoformat()},
        format="json",
    )

    assert response.status_code == 201
    row = ApiKey.objects.get(pk=response.json()["id"])
    assert row.allowed_models == ["gemma-4-26b"]
    assert row.expires_at == expires


def test_list_and_detail_never_show_the_secret(client, alice_org):
    created = client.post(keys_url(alice_org), {"name": "ci"}, format="json").json()

    listing = client.get(keys_url(alice_org))
    detail = client.get(key_url(alice_org, created["id"]))

    assert listing.status_code == detail.status_code == 200
    assert [k["id"] for k in listing.json()["results"]] == [created["id"]]
    assert detail.json()["masked"] == f"{created['prefix']}…{created['last_four']}"
    assert_no_secret(listing, created["key"])
    assert_no_secret(detail, created["key"])
    assert "key" not in detail.json()


def test_list_paginates_with_limit_and_offset(client, alice, alice_org):
    ids = {str(issue_key(alice_org, by=alice, name=f"k{i}").key.pk) for i in range(3)}

    first = client.get(keys_url(alice_org), {"limit": 2}).json()
    rest = client.get(keys_url(alice_org), {"limit": 2, "offset": 2}).json()

    assert first["count"] == rest["count"] == 3
    assert len(first["results"]) == 2 and first["next"]
    assert len(rest["results"]) == 1 and rest["next"] is None
    assert {k["id"] for k in first["results"] + rest["results"]} == ids


def test_list_shows_newest_first(client, alice, alice_org):
    now = timezone.now()
    old = issue_key(alice_org, by=alice, name="old", now=now - timedelta(hours=1))
    new = issue_key(alice_org, by=alice, name="new", now=now)

    body = client.get(keys_url(alice_org)).json()

    assert [k["id"] for k in body["results"]] == [str(new.key.pk), str(old.key.pk)]


# --- update --------------------------------------------------------------------------


def test_patch_renames(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice, name="old")

    response = client.patch(key_url(alice_org, issued.key.pk), {"name": "new"}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "new"
    assert ApiKey.objects.get(pk=issued.key.pk).name == "new"


def test_patch_sets_allowed_models(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)

    response = client.patch(
        key_url(alice_org, issued.key.pk),
        {"allowed_models": ["gemma-4-26b", "qwen-3"]},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["allowed_models"] == ["gemma-4-26b", "qwen-3"]
    assert ApiKey.objects.get(pk=issued.key.pk).allowed_models == ["gemma-4-26b", "qwen-3"]


def test_patch_null_clears_allowed_models(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice, name="keep", allowed_models=["gemma-4-26b"])

    response = client.patch(
        key_url(alice_org, issued.key.pk), {"allowed_models": None}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["allowed_models"] is None
    row = ApiKey.objects.get(pk=issued.key.pk)
    assert (row.allowed_models, row.name) == (None, "keep")


def test_patch_with_nothing_to_change_is_400(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)

    response = client.patch(key_url(alice_org, issued.key.pk), {}, format="json")

    assert_stable_error(
        response, status=400, code="invalid_request_error", type_="invalid_request_error"
    )


# --- revoke, rotate ------------------------------------------------------------------


def test_delete_revokes(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)

    response = client.delete(key_url(alice_org, issued.key.pk))

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at"]
    assert ApiKey.objects.get(pk=issued.key.pk).status == ApiKey.Status.REVOKED


def test_second_delete_is_200_and_changes_nothing(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    first = client.delete(key_url(alice_org, issued.key.pk)).json()

    second = client.delete(key_url(alice_org, issued.key.pk))

    assert second.status_code == 200
    assert second.json()["status"] == "revoked"
    assert second.json()["revoked_at"] == first["revoked_at"]


def test_rotate_answers_201_with_a_new_key_and_revokes_the_old(client, alice, alice_org):
    old = issue_key(alice_org, by=alice, name="prod", allowed_models=["gemma-4-26b"])

    response = client.post(f"{key_url(alice_org, old.key.pk)}/rotate")

    assert response.status_code == 201
    body = response.json()
    assert material.looks_like_key(body["key"]) and body["key"] != old.plaintext
    assert (body["name"], body["allowed_models"]) == ("prod", ["gemma-4-26b"])
    assert body["id"] != str(old.key.pk)
    assert client.get(key_url(alice_org, old.key.pk)).json()["status"] == "revoked"
    assert_no_secret(response, old.plaintext)


def test_rotating_a_revoked_key_is_400(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    client.delete(key_url(alice_org, issued.key.pk))

    response = client.post(f"{key_url(alice_org, issued.key.pk)}/rotate")

    assert_stable_error(response, status=400, code="invalid_request_error")


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "name", id="missing name"),
        pytest.param({"name": ""}, "name", id="blank name"),
        pytest.param({"name": "x" * 101}, "name", id="name too long"),
        pytest.param(
            {"name": "ci", "allowed_models": "gemma-4-26b"},
            "allowed_models",
            id="models not a list",
        ),
        pytest.param(
            {"name": "ci", "expires_at": "next tuesday"}, "expires_at", id="expiry not a date"
        ),
        pytest.param(
            {"name": "ci", "expires_at": "2001-01-01T00:00:00Z"},
            "expires_at",
            id="expiry in the past",
        ),
    ],
)
def test_invalid_create_is_400_naming_the_field(client, alice_org, body, param):
    response = client.post(keys_url(alice_org), body, format="json")

    assert_stable_error(
        response,
        status=400,
        code="invalid_request_error",
        type_="invalid_request_error",
        param=param,
    )
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_a_bad_model_name_is_400_naming_the_entry(client, alice_org):
    response = client.post(
        keys_url(alice_org),
        {"name": "ci", "allowed_models": ["gemma-4-26b", "Not A Model!"]},
        format="json",
    )

    error = assert_stable_error(
        response, status=400, code="invalid_request_error", type_="invalid_request_error"
    )
    assert error["param"] in {"allowed_models.1", "allowed_models[1]"}
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_invalid_patch_is_400_naming_the_field(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice, name="keep")

    response = client.patch(key_url(alice_org, issued.key.pk), {"name": "x" * 101}, format="json")

    assert_stable_error(response, status=400, code="invalid_request_error", param="name")
    assert ApiKey.objects.get(pk=issued.key.pk).name == "keep"


def test_malformed_json_is_400(client, alice_org):
    response = client.post(keys_url(alice_org), data='{"name": ', content_type="application/json")

    assert_stable_error(
        response, status=400, code="invalid_json", type_="invalid_request_error", param=None
    )
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_a_form_body_is_415(client, alice_org):
    response = client.post(
        keys_url(alice_org), data="name=ci", content_type="application/x-www-form-urlencoded"
    )

    assert_stable_error(response, status=415, code="unsupported_media_type")


# --- the plan's key cap ------------------------------------------------------------------


def test_a_key_past_the_plan_cap_is_409(client, alice, alice_org):
    cap = alice_org.subscriptions.get(status="active").plan.max_active_keys
    for i in range(cap):
        assert client.post(keys_url(alice_org), {"name": f"k{i}"}, format="json").status_code == 201

    response = client.post(keys_url(alice_org), {"name": "one too many"}, format="json")

    assert_stable_error(
        response, status=409, code="key_limit_reached", type_="invalid_request_error"
    )
    assert ApiKey.objects.filter(org=alice_org).count() == cap


# --- web-app compatibility routes -------------------------------------------------------


def test_portal_api_keys_create_and_list_act_on_the_personal_org(client, alice_org):
    created = client.post("/portal/api-keys", {"name": "web"}, format="json")

    listing = client.get("/portal/api-keys")

    assert created.status_code == 201
    assert material.looks_like_key(created.json()["key"])
    assert ApiKey.objects.get(pk=created.json()["id"]).org == alice_org
    assert [k["id"] for k in listing.json()["results"]] == [created.json()["id"]]
    assert_no_secret(listing, created.json()["key"])


def test_portal_api_keys_list_shows_only_the_callers_keys(client, alice, alice_org, bob, bob_org):
    mine = issue_key(alice_org, by=alice)
    issue_key(bob_org, by=bob)

    listing = client.get("/portal/api-keys").json()

    assert [k["id"] for k in listing["results"]] == [str(mine.key.pk)]


def test_portal_api_keys_delete_revokes(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)

    response = client.delete(f"/portal/api-keys/{issued.key.pk}")

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert ApiKey.objects.get(pk=issued.key.pk).status == ApiKey.Status.REVOKED


def test_portal_api_keys_delete_of_another_users_key_is_404(client, bob, bob_org):
    theirs = issue_key(bob_org, by=bob)

    response = client.delete(f"/portal/api-keys/{theirs.key.pk}")

    assert_stable_error(response, status=404, code="not_found")
    assert ApiKey.objects.get(pk=theirs.key.pk).status == ApiKey.Status.ACTIVE


def test_portal_api_keys_create_respects_the_cap(client, alice, alice_org):
    cap = alice_org.subscriptions.get(status="active").plan.max_active_keys
    for i in range(cap):
        issue_key(alice_org, by=alice, name=f"k{i}")

    response = client.post("/portal/api-keys", {"name": "one too many"}, format="json")

    assert_stable_error(response, status=409, code="key_limit_reached")


# --- request ids --------------------------------------------------------------------


def test_every_response_has_a_request_id(client, alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    responses = [
        client.get(keys_url(alice_org)),
        client.post(keys_url(alice_org), {"name": "ci"}, format="json"),
        client.post(keys_url(alice_org), {}, format="json"),
        client.get(key_url(alice_org, issued.key.pk)),
        client.patch(key_url(alice_org, issued.key.pk), {"name": "x"}, format="json"),
        client.post(f"{key_url(alice_org, issued.key.pk)}/rotate"),
        client.delete(key_url(alice_org, issued.key.pk)),
        client.get(key_url(alice_org, "not-a-uuid")),
        client.get("/portal/api-keys"),
    ]

    ids = [r["x-request-id"] for r in responses]
    assert all(i.startswith("req_") and len(i) > len("req_") for i in ids), ids
    assert len(set(ids)) == len(ids)
