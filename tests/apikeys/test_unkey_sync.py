"""`manage.py sync_unkey_keys`: prints the drift between the Portal and Unkey, fixes it with --apply."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Plan
from accounts.services import org_change_plan
from apikeys import services, tasks

pytestmark = pytest.mark.django_db


def sync(*args: str) -> str:
    out = StringIO()
    call_command("sync_unkey_keys", *args, stdout=out)
    return out.getvalue()


def issue(org, user, name="ci"):
    return services.api_key_create(org=org, created_by=user, name=name, now=timezone.now())


def test_nothing_to_do_when_unkey_matches(unkey_fake, alice, alice_org):
    issue(alice_org, alice)

    assert sync().splitlines() == [
        "Dry run: 0 changes would be made, 0 missing; run with --apply to make them."
    ]


def test_a_revoke_unkey_missed_is_printed_then_applied(
    unkey_fake, alice, alice_org, django_capture_on_commit_callbacks
):
    issued = issue(alice_org, alice)
    unkey_fake.outage = 503
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key=issued.key, actor=None, now=timezone.now())
    unkey_fake.outage = None
    held = unkey_fake.key(issued.key.external_id)

    dry = sync()

    assert f"update {issued.key.external_id} (Portal key {issued.key.pk}" in dry
    assert "enabled: True -> False" in dry and "'status': 'revoked'" in dry
    assert "1 changes would be made" in dry
    assert (
        held.enabled and not unkey_fake.calls_to("keys.updateKey")[1:]
    )  # the dry run wrote nothing

    applied = sync("--apply")

    assert "1 changes made, 0 failed" in applied
    assert (held.enabled, held.meta["status"]) == (False, "revoked")
    assert "0 changes would be made" in sync()


def test_a_plan_change_updates_unkeys_ratelimits_and_meta(unkey_fake, alice, alice_org):
    issued = issue(alice_org, alice)
    org_change_plan(
        org=alice_org, plan=Plan.objects.get(code="pro"), actor=None, now=timezone.now(), reason="t"
    )

    dry = sync()
    sync("--apply")

    assert "ratelimits:" in dry and "'limit': 600" in dry and "'plan': 'pro'" in dry
    held = unkey_fake.key(issued.key.external_id)
    assert (
        held.ratelimits["requests"]["limit"] == 600 and held.ratelimits["window"]["limit"] == 3000
    )
    assert held.meta["plan"] == "pro"


def test_name_expiry_and_org_drift_are_repaired(unkey_fake, alice, alice_org):
    issued = issue(alice_org, alice, name="right")
    held = unkey_fake.key(issued.key.external_id)
    held.name, held.external_id, held.expires = "wrong", "someone-else", 123

    sync("--apply")

    assert (held.name, held.external_id, held.expires) == ("right", str(alice_org.pk), None)


def test_revoked_keys_are_deleted_from_unkey_on_request(
    unkey_fake, alice, alice_org, django_capture_on_commit_callbacks
):
    issued = issue(alice_org, alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key=issued.key, actor=None, now=timezone.now())

    assert "0 changes" in sync()
    out = sync("--apply", "--delete-revoked")

    assert f"delete {issued.key.external_id}" in out and "revoked in the Portal" in out
    assert unkey_fake.key(issued.key.external_id).deleted


def test_old_orphans_the_portal_created_are_deleted_and_young_ones_left(
    unkey_fake, alice, alice_org
):
    orphan, young, foreign = (
        issue(alice_org, alice, name=n) for n in ("orphan", "young", "foreign")
    )
    for issued in (orphan, young, foreign):
        issued.key.delete()  # as if the create had rolled back after Unkey made the key
    kept = issue(alice_org, alice)
    unkey_fake.key(orphan.key.external_id).created_at -= 3600_000
    unkey_fake.key(foreign.key.external_id).created_at -= 3600_000
    unkey_fake.key(foreign.key.external_id).meta = {"owner": "another system"}

    out = sync("--apply")

    assert f"delete {orphan.key.external_id}: no Portal key has it" in out
    assert unkey_fake.key(orphan.key.external_id).deleted
    assert not unkey_fake.key(young.key.external_id).deleted  # may be a create still committing
    assert not unkey_fake.key(foreign.key.external_id).deleted  # not the Portal's
    assert not unkey_fake.key(kept.key.external_id).deleted


def test_a_portal_key_unkey_lost_is_reported(unkey_fake, alice, alice_org):
    issued = issue(alice_org, alice)
    unkey_fake.key(issued.key.external_id).deleted = True

    out = sync("--apply")

    assert f"missing {issued.key.external_id}" in out and "1 missing" in out


def test_unkey_down_is_a_command_error(unkey_fake, alice, alice_org):
    issue(alice_org, alice)
    unkey_fake.outage = "timeout"

    with pytest.raises(CommandError, match="Unkey did not answer"):
        sync()


def test_needs_the_unkey_settings(settings):
    settings.UNKEY_ROOT_KEY = ""

    with pytest.raises(CommandError, match="UNKEY_ROOT_KEY"):
        sync()


def test_the_scheduled_task_applies_the_drift(unkey_fake, alice, alice_org):
    issued = issue(alice_org, alice)
    org_change_plan(
        org=alice_org, plan=Plan.objects.get(code="pro"), actor=None, now=timezone.now(), reason="t"
    )

    summary = tasks.sync_unkey_keys.apply(kwargs={}).get()

    assert summary == {"changed": 1, "failed": 0, "missing": 0}
    assert unkey_fake.key(issued.key.external_id).ratelimits["requests"]["limit"] == 600
