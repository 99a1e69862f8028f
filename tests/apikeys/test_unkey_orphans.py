"""Key creation with Unkey: the remote call holds no database lock, and a key Unkey issued
for a row that is never committed is revoked at once (no orphan keys at Unkey)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from apikeys import services
from apikeys.models import ApiKey
from apikeys.providers import UnkeyProvider


class Boom(Exception):
    pass


def _fail_the_audit(monkeypatch):
    def audit_record(**kwargs):
        raise Boom("audit log unavailable")

    monkeypatch.setattr(services, "audit_record", audit_record)


@pytest.mark.django_db(transaction=True)
def test_unkey_is_called_outside_any_transaction(unkey_fake, alice, alice_org, monkeypatch):
    seen: list[bool] = []
    issue = UnkeyProvider.issue

    def spying_issue(self, **kwargs):
        seen.append(connection.in_atomic_block)
        return issue(self, **kwargs)

    monkeypatch.setattr(UnkeyProvider, "issue", spying_issue)
    created = services.api_key_create(
        org=alice_org, created_by=alice, name="ci", now=timezone.now()
    )
    services.api_key_rotate(key=created.key, actor=alice, now=timezone.now())
    assert seen == [False, False]  # no transaction, so no row lock, while Unkey is asked


@pytest.mark.django_db
def test_a_create_that_does_not_commit_revokes_unkeys_key(
    unkey_fake, alice, alice_org, monkeypatch
):
    _fail_the_audit(monkeypatch)
    with pytest.raises(Boom):
        services.api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now())

    assert not ApiKey.objects.exists()
    [orphan] = unkey_fake.keys.values()
    assert orphan.enabled is False
    [update] = unkey_fake.calls_to("keys.updateKey")
    assert update["keyId"] == orphan.key_id and update["enabled"] is False


@pytest.mark.django_db
def test_a_rotation_that_does_not_commit_revokes_the_new_key_and_keeps_the_old(
    unkey_fake, alice, alice_org, monkeypatch
):
    old = services.api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now())
    _fail_the_audit(monkeypatch)
    with pytest.raises(Boom):
        services.api_key_rotate(key=old.key, actor=alice, now=timezone.now())

    assert list(ApiKey.objects.values_list("pk", "status")) == [(old.key.pk, "active")]
    keys = {key.key_id: key for key in unkey_fake.keys.values()}
    assert keys.pop(old.key.external_id).enabled is True
    [new] = keys.values()
    assert new.enabled is False
