"""Staff users, an admin client that runs reason-asking actions, and the live-process
fixtures of tests/e2e (router simulators, gateway servers) for controls observed on a
gateway served by a separate process."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

# The e2e suite's process fixtures and hooks (skip e2e without real Postgres and Redis;
# logs of failed tests), shared rather than copied.
from tests.e2e.conftest import (  # noqa: F401
    gateway,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    simulator_pool,
    simulators,
)


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser("ops-staff", "staff@example.com", "pw-staff-1")


@pytest.fixture
def plain_user(db):
    """An active `auth.User` who is not staff: the admin must turn them away."""
    return get_user_model().objects.create_user("not-staff", "user@example.com", "pw-user-1")


@pytest.fixture
def viewer_user(db):
    """Staff who may only view keys: sees the list, cannot run controls."""
    user = get_user_model().objects.create_user(
        "viewer", "viewer@example.com", "pw-viewer-1", is_staff=True
    )
    user.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    return user


class AdminClient(Client):
    def action(self, model: str, action: str, objects, *, confirm: bool = True, **form):
        """Run a reason-asking admin action on `objects` of `model` ("app_label.model").

        The first POST must render the confirmation page; with `confirm` the form is
        submitted (reason and any other fields from `form`). Returns the last response.
        """
        url = reverse(f"admin:{model.replace('.', '_')}_changelist")
        ids = [str(obj.pk) for obj in objects]
        page = self.post(url, {"action": action, "_selected_action": ids})
        assert page.status_code == 200, page.status_code
        assert b'name="confirm"' in page.content and b'name="reason"' in page.content, page.content[
            :500
        ]
        if not confirm:
            return page
        return self.post(url, {"action": action, "_selected_action": ids, "confirm": "yes", **form})


@pytest.fixture
def staff_client(staff_user):
    client = AdminClient()
    client.force_login(staff_user)
    return client
