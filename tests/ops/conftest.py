"""Admin users who are not full staff: the admin must turn them away or limit them.
(`staff_user`, `staff_client` and the live-process fixtures are in tests/conftest.py.)"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


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
