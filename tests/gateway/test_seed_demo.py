"""`manage.py seed_demo`: whoever is named owner finds the demo org when they sign in with the
configured auth provider, reruns change nothing but the key, and a replaced key is named."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import OrganizationMember, User
from accounts.signing import mint_dev_token
from apikeys.models import ApiKey
from pools.catalog import get_catalog

pytestmark = pytest.mark.django_db

ROUTER = "http://127.0.0.1:9"  # never called


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", "--router-url", ROUTER, *args, stdout=out)
    return out.getvalue()


def seed_json(*args: str) -> dict:
    return json.loads(seed(*args, "--json").splitlines()[-1])


def orgs_seen_with(token: str) -> dict[str, str]:
    """Org id -> role, as the dashboard lists them for the bearer of `token`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get("/api/v1/orgs")
    assert response.status_code == 200, response.content
    return {org["id"]: org["role"] for org in response.json()["results"]}


def test_an_owner_identity_signs_in_with_their_provider_and_finds_the_demo_org(idp):
    subject = idp.base_claims["sub"]  # a Clerk user id / a Supabase user uuid

    demo = seed_json("--owner-identity", subject, "--owner-email", "owner@example.com")

    assert demo["owner"]["auth_provider"] == idp.name and demo["owner"]["subject"] == subject
    seen = orgs_seen_with(idp.token())
    assert seen[demo["org_id"]] == "owner"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {idp.token()}")
    assert client.get(f"/api/v1/orgs/{demo['org_id']}/usage").status_code == 200


def test_reruns_keep_one_owner_and_say_which_demo_key_they_revoked(clerk):
    first = seed_json("--owner-identity", "user_2owner")
    second = seed_json("--owner-identity", "user_2owner")

    assert (second["org_id"], second["owner"]) == (first["org_id"], first["owner"])
    assert User.objects.filter(auth_provider="clerk", subject="user_2owner").count() == 1
    owner_rows = OrganizationMember.objects.filter(
        org_id=first["org_id"], user__subject="user_2owner"
    )
    assert [m.role for m in owner_rows] == ["owner"]
    assert set(second) >= {
        "org_id",
        "api_key",
        "models",
        "revoked_key_ids",
    }  # bin/dev reads api_key
    replaced = ApiKey.objects.get(pk=second["revoked_key_ids"][0])
    assert second["revoked_key_ids"] == [str(replaced.pk)] and replaced.status == "revoked"
    assert first["api_key"].endswith(replaced.last_four)

    live = ApiKey.objects.get(status="active", org_id=first["org_id"])
    text = seed("--owner-identity", "user_2owner")

    assert f"Revoked the previous demo key {live.prefix}…{live.last_four} ({live.pk})." in text
    assert second["api_key"] not in text  # the old secret is never printed again
    new = ApiKey.objects.get(status="active", org_id=first["org_id"])
    last_line = text.splitlines()[-1]  # the new secret, still the last line
    assert last_line.startswith(new.prefix) and last_line.endswith(new.last_four)


def test_the_first_run_revokes_nothing_and_names_no_owner():
    text = seed()

    assert "Revoked" not in text and "Owner" not in text
    demo = seed_json()
    assert len(demo["revoked_key_ids"]) == 1 and demo["owner"] is None


def test_with_the_dev_signer_an_owner_email_is_the_user_mint_token_signs_in_as(settings):
    settings.AUTH_PROVIDER = "dev"

    demo = seed_json("--owner-email", "Ann@Example.com")

    token = mint_dev_token(subject="dev|ann@example.com", email="Ann@Example.com")
    assert orgs_seen_with(token)[demo["org_id"]] == "owner"


def test_an_owner_email_finds_a_user_who_signed_in_before(clerk):
    orgs_seen_with(clerk.token())  # the first sign-in provisions user_2clerk / clerk@example.com

    demo = seed_json("--owner-email", "clerk@example.com")

    assert demo["owner"]["subject"] == "user_2clerk"
    assert orgs_seen_with(clerk.token())[demo["org_id"]] == "owner"


def test_an_owner_email_nobody_signed_in_with_is_refused_before_anything_is_seeded(clerk):
    with pytest.raises(CommandError, match="--owner-identity"):
        seed("--owner-email", "stranger@example.com")

    assert not User.objects.exists()
    assert not ApiKey.objects.exists()


def test_a_rerun_with_other_router_urls_moves_the_routers_and_the_gateway_sees_it(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "seed_demo",
            "--router-url",
            ROUTER,
            "--router-url",
            "http://127.0.0.1:10",
            stdout=StringIO(),
        )
    assert len(get_catalog().resolve("qwen-3-32b").routes[0].routers) == 2

    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", "--router-url", "http://127.0.0.1:11", stdout=StringIO())

    routers = get_catalog().resolve("qwen-3-32b").routes[0].routers
    assert [(r.name, r.base_url) for r in routers] == [("router-1", "http://127.0.0.1:11")]
