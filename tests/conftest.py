"""Shared fixtures: a fresh fast-state namespace per test, a small cast of users and orgs."""

from __future__ import annotations

import os
import uuid

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import OrganizationMember
from accounts.services import Identity, user_get_or_provision
from infra import faststate

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionstart(session):
    if IN_CI:
        engine = settings.DATABASES["default"]["ENGINE"]
        problems = []
        if "postgresql" not in engine:
            problems.append(f"CI=true needs DATABASE_URL pointing at Postgres (engine is {engine})")
        if not settings.REDIS_URL:
            problems.append("CI=true needs REDIS_URL pointing at Redis")
        if problems:
            pytest.exit("; ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _default_plans(request):
    """Transactional tests flush the database after each test, seeded plans included: re-seed."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        from accounts.models import Plan
        from accounts.plan_defaults import ensure_default_plans

        ensure_default_plans(Plan)


@pytest.fixture(autouse=True)
def fast_state(settings):
    """Each test gets its own fast-state key namespace (real Redis when REDIS_URL is set)."""
    settings.FAST_STATE_PREFIX = f"test:{uuid.uuid4().hex[:12]}:"
    faststate.reset_client_for_tests()
    client = faststate.get_client()
    yield client
    if settings.REDIS_URL:
        keys = list(client.scan_iter(match=settings.FAST_STATE_PREFIX + "*", count=500))
        if keys:
            client.delete(*keys)
    faststate.reset_client_for_tests()


def make_user(email: str, *, subject: str | None = None, name: str = "") -> accounts.models.User:  # noqa: F821
    """A user with a personal org on the free plan, as the first dashboard request makes one."""
    identity = Identity(provider="dev", subject=subject or f"user_{email}", email=email, name=name)
    return user_get_or_provision(identity=identity, now=timezone.now())


def add_member(org, user, role: str) -> OrganizationMember:
    return OrganizationMember.objects.create(
        org=org, user=user, role=role, created_at=timezone.now()
    )


@pytest.fixture
def alice(db):
    return make_user("alice@example.com", name="Alice")


@pytest.fixture
def bob(db):
    return make_user("bob@example.com", name="Bob")


@pytest.fixture
def alice_org(alice):
    return alice.personal_org


@pytest.fixture
def bob_org(bob):
    return bob.personal_org
    settings.GATEWAY_UPKEEP = False  # in process, tests run gateway.upkeep's steps themselves


@pytest.fixture
def api():
    """An API client; `api.as_user(u)` authenticates as a portal user."""
    client = APIClient()

    def as_user(user):
        client.force_authenticate(user=user)
        return client

    client.as_user = as_user
    return client
