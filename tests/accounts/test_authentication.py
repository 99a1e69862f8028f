"""Bearer JWT authentication through the DRF layer, and just-in-time user provisioning."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import OrganizationMember, PlanSubscription, User
from accounts.services import Identity, user_get_or_provision
from accounts.signing import mint_dev_token
from tests.support.errors import assert_stable_error
from tests.support.identity import unsigned_token

ME = "/api/v1/me"


def get_me(token: str | None = None, *, header: str | None = None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(ME)


def assert_unauthorized(response, code: str) -> None:
    assert_stable_error(response, status=401, code=code, type_="authentication_error")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.django_db
def test_dev_token_reaches_me(dev):
    response = get_me(
        mint_dev_token(subject="dev|ann@example.com", email="ann@example.com", name="Ann")
    )

    assert response.status_code == 200, response.content
    assert response.json()["email"] == "ann@example.com"


@pytest.mark.django_db
def test_missing_header_is_not_authenticated(dev):
    assert_unauthorized(get_me(), "not_authenticated")


@pytest.mark.django_db
def test_expired_token(dev):
    assert_unauthorized(get_me(mint_dev_token(subject="s", ttl_seconds=-120)), "token_expired")


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt"])
def test_malformed_bearer_header(dev, header):
    assert_unauthorized(get_me(header=header), "invalid_token")


@pytest.mark.django_db
def test_alg_none(dev):
    claims = {"iss": "portal-dev", "aud": "portal", "sub": "s", "exp": int(time.time()) + 60}

    assert_unauthorized(get_me(unsigned_token(claims)), "invalid_token")


@pytest.mark.django_db
def test_clerk_token_reaches_me(clerk):
    response = get_me(clerk.token())

    assert response.status_code == 200, response.content
    assert response.json()["email"] == "clerk@example.com"
    assert User.objects.get().auth_provider == "clerk"


@pytest.mark.django_db
def test_supabase_token_reaches_me(supabase):
    response = get_me(supabase.token())

    assert response.status_code == 200, response.content
    assert response.json()["email"] == "supa@example.com"


@pytest.mark.django_db
def test_jwks_endpoint_down_is_401_not_500(idp, jwks_server):
    jwks_server.fail(idp.jwks_url)

    response = get_me(idp.token())

    assert_unauthorized(response, "invalid_token")
    assert response.json()["error"]["message"] == "Could not fetch signing keys."


@pytest.mark.django_db
def test_first_request_provisions_a_user_with_a_personal_org_on_free(dev):
    token = mint_dev_token(subject="dev|new@example.com", email="new@example.com", name="New")

    assert get_me(token).status_code == 200

    user = User.objects.get(auth_provider="dev", subject="dev|new@example.com")
    org = user.personal_org
    assert OrganizationMember.objects.filter(user=user).count() == 1
    assert OrganizationMember.objects.get(user=user, org=org).role == OrganizationMember.Role.OWNER
    subscription = PlanSubscription.objects.get(org=org, status=PlanSubscription.Status.ACTIVE)
    assert subscription.plan.code == "free"


@pytest.mark.django_db
def test_second_request_reuses_the_user(dev):
    token = mint_dev_token(subject="dev|new@example.com", email="new@example.com")

    first = get_me(token).json()
    second = get_me(token).json()

    assert first["id"] == second["id"]
    assert User.objects.filter(subject="dev|new@example.com").count() == 1
    assert (
        PlanSubscription.objects.filter(org__personal_for__subject="dev|new@example.com").count()
        == 1
    )


@pytest.mark.django_db
def test_disabled_user_is_refused(dev):
    token = mint_dev_token(subject="dev|gone@example.com", email="gone@example.com")
    get_me(token)
    User.objects.filter(subject="dev|gone@example.com").update(status=User.Status.DISABLED)

    response = get_me(token)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "user_disabled"


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_requests_provision_one_user(monkeypatch):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # Shared-cache in-memory SQLite fails concurrent writers with "table is locked" instead of
        # waiting on the busy timeout; a file-backed SQLite or Postgres runs this for real.
        pytest.skip("needs a file-backed or server database for concurrent writers")
    # Hold the winner's transaction open briefly so the loser really collides on the insert.
    create_org = services._create_personal_org

    def slow_create_org(**kwargs):
        time.sleep(0.2)
        return create_org(**kwargs)

    monkeypatch.setattr(services, "_create_personal_org", slow_create_org)
    identity = Identity(provider="dev", subject="dev|race@example.com", email="race@example.com")
    now = timezone.now()
    barrier = threading.Barrier(2)
    results: list[User] = []
    errors: list[BaseException] = []

    def provision() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(user_get_or_provision(identity=identity, now=now))
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=provision) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len({user.pk for user in results}) == 1
    assert User.objects.filter(subject="dev|race@example.com").count() == 1
    assert (
        PlanSubscription.objects.filter(org__personal_for__subject="dev|race@example.com").count()
        == 1
    )
