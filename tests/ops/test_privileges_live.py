"""Key removal and a customer user's status, changed by staff in this process, observed on
the next request to a gateway served by a separate process (as test_controls_live.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from apikeys.models import ApiKey
from apikeys.services import api_key_create
from tests.support import live

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_deleted_key_is_refused_on_the_next_request(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    key = stack.tenant.key
    assert stack.code() == (200, "")  # the gateway has cached the key's auth context

    # The admin offers revoke, not delete.
    delete = reverse("admin:apikeys_apikey_delete", args=[key.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:apikeys_apikey_changelist")
    bulk = staff_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [str(key.pk)], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert ApiKey.objects.filter(pk=key.pk).exists()
    assert stack.code() == (200, "")

    # A key deleted any other way (here with code, as a cascade would) is refused at once.
    ApiKey.objects.filter(pk=key.pk).delete()
    assert stack.code() == (401, "invalid_api_key")
    (row,) = AuditEvent.objects.filter(action="api_key.delete")
    assert row.target_id == str(key.pk) and row.before["org"] == str(stack.tenant.org.pk)


def test_a_disabled_users_keys_are_refused_on_the_next_request(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    user = stack.tenant.user
    # Another member's key in the same org keeps working: the rule follows the creator.
    other = api_key_create(
        org=stack.tenant.org, created_by=None, name="staff-made", now=timezone.now()
    )
    assert stack.code() == (200, "") and stack.code(key=other.plaintext) == (200, "")

    staff_client.action("accounts.user", "disable_users", [user], reason="card fraud")
    assert stack.code() == (403, "api_key_disabled")
    assert stack.code(key=other.plaintext) == (200, "")

    staff_client.action("accounts.user", "enable_users", [user], reason="cleared")
    assert stack.code() == (200, "")
    assert list(
        AuditEvent.objects.filter(target_type="user")
        .order_by("id")
        .values_list("action", "reason", "actor_label", "before", "after")
    ) == [
        ("user.disable", "card fraud", "ops-staff", {"status": "active"}, {"status": "disabled"}),
        ("user.enable", "cleared", "ops-staff", {"status": "disabled"}, {"status": "active"}),
    ]
