"""API key lifecycle: what is stored, what is audited, the plan's key cap, cache invalidation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.models import AuditEvent, PlanSubscription
from apikeys import material, services
from apikeys.authcache import key_generation_key
from apikeys.models import ApiKey
from portal.errors import PortalError
from tests.factories.apikeys import issue_key
from tests.support.ci import IN_CI


def cap_of(org) -> int:
    """The org's active-key cap as its Plan row says."""
    return PlanSubscription.objects.get(org=org, status="active").plan.max_active_keys


def fill_to_cap(org, user, *, now, leave_free: int = 0) -> list[services.IssuedKey]:
    return [issue_key(org, by=user, name=f"k{i}", now=now) for i in range(cap_of(org) - leave_free)]


def audit_rows(key: ApiKey):
    return AuditEvent.objects.filter(target_type="api_key", target_id=str(key.pk)).order_by("id")


# --- create ----------------------------------------------------------------------


def test_create_returns_a_live_plaintext_key(alice, alice_org):
    issued = issue_key(alice_org, by=alice, name="ci")

    assert material.looks_like_key(issued.plaintext)
    assert issued.key.name == "ci"
    assert issued.key.status == ApiKey.Status.ACTIVE
    assert issued.key.org == alice_org


def test_create_stores_only_the_hmac_prefix_and_last_four(alice, alice_org):
    issued = issue_key(alice_org, by=alice)

    row = ApiKey.objects.get(pk=issued.key.pk)
    assert row.key_hash == material.hash_secret(issued.plaintext)
    assert row.prefix == issued.plaintext[:13]
    assert row.last_four == issued.plaintext[-4:]


def test_plaintext_appears_in_no_column_of_the_key_row(alice, alice_org):
    issued = issue_key(alice_org, by=alice, allowed_models=["gemma-4-26b"])
    body = issued.plaintext[len("ctr_live_") :]

    row = ApiKey.objects.get(pk=issued.key.pk)
    for field in ApiKey._meta.concrete_fields:
        value = str(getattr(row, field.attname))
        assert issued.plaintext not in value, field.name
        assert body not in value, field.name


def test_plaintext_appears_in_no_audit_row(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    body = issued.plaintext[len("ctr_live_") :]

    for event in AuditEvent.objects.all():
        for field in AuditEvent._meta.concrete_fields:
            assert body not in str(getattr(event, field.attname)), field.name


def test_create_writes_an_audit_row(alice, alice_org):
    now = timezone.now()

    issued = issue_key(alice_org, by=alice, name="ci", now=now)

    [event] = audit_rows(issued.key)
    assert event.action == "api_key.create"
    assert (event.actor_type, event.actor_id) == ("user", str(alice.pk))
    assert event.org == alice_org
    assert event.created_at == now
    assert event.after["name"] == "ci"


def test_create_with_expiry_in_the_past_is_refused(alice, alice_org):
    now = timezone.now()

    with pytest.raises(PortalError) as caught:
        issue_key(alice_org, by=alice, now=now, expires_at=now - timedelta(seconds=1))

    assert caught.value.code == "invalid_request_error"
    assert caught.value.param == "expires_at"
    assert not ApiKey.objects.filter(org=alice_org).exists()


# --- revoke ----------------------------------------------------------------------


def test_revoke_takes_effect_at_once(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    now = timezone.now()

    services.api_key_revoke(key=issued.key, actor=alice, now=now)

    row = ApiKey.objects.get(pk=issued.key.pk)
    assert row.status == ApiKey.Status.REVOKED
    assert row.revoked_at == now


def test_revoke_writes_an_audit_row(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    now = timezone.now()

    services.api_key_revoke(key=issued.key, actor=alice, now=now, reason="leaked")

    event = audit_rows(issued.key).last()
    assert event.action == "api_key.revoke"
    assert (event.actor_type, event.actor_id) == ("user", str(alice.pk))
    assert event.target_id == str(issued.key.pk)
    assert event.created_at == now
    assert event.reason == "leaked"
    assert (event.before["status"], event.after["status"]) == ("active", "revoked")


def test_revoking_twice_changes_nothing(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    first = timezone.now()
    services.api_key_revoke(key=issued.key, actor=alice, now=first)
    audits = audit_rows(issued.key).count()

    again = services.api_key_revoke(key=issued.key, actor=alice, now=first + timedelta(hours=1))

    assert again.status == ApiKey.Status.REVOKED
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_at == first
    assert audit_rows(issued.key).count() == audits


def test_a_revoked_key_cannot_be_enabled_again(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    services.api_key_revoke(key=issued.key, actor=alice, now=timezone.now())

    services.api_key_enable(key=issued.key, actor=alice, now=timezone.now())

    assert ApiKey.objects.get(pk=issued.key.pk).status == ApiKey.Status.REVOKED


# --- rotate ----------------------------------------------------------------------


def test_rotate_issues_a_new_secret_with_the_same_settings(alice, alice_org):
    old = issue_key(alice_org, by=alice, name="prod", allowed_models=["gemma-4-26b"])

    new = services.api_key_rotate(key=old.key, actor=alice, now=timezone.now())

    assert material.looks_like_key(new.plaintext)
    assert new.plaintext != old.plaintext
    assert new.key.pk != old.key.pk
    assert (new.key.name, new.key.allowed_models) == ("prod", ["gemma-4-26b"])
    assert new.key.status == ApiKey.Status.ACTIVE


def test_rotate_revokes_the_old_key_and_links_it_to_the_new(alice, alice_org):
    old = issue_key(alice_org, by=alice)
    now = timezone.now()

    new = services.api_key_rotate(key=old.key, actor=alice, now=now)

    row = ApiKey.objects.get(pk=old.key.pk)
    assert row.status == ApiKey.Status.REVOKED
    assert row.revoked_at == now
    assert row.replaced_by_id == new.key.pk


def test_rotate_audits_the_revoke_and_the_new_key(alice, alice_org):
    old = issue_key(alice_org, by=alice)

    new = services.api_key_rotate(key=old.key, actor=alice, now=timezone.now())

    assert audit_rows(old.key).last().action == "api_key.revoke"
    assert [e.action for e in audit_rows(new.key)] == ["api_key.create"]


def test_rotating_a_revoked_key_is_refused(alice, alice_org):
    issued = issue_key(alice_org, by=alice)
    services.api_key_revoke(key=issued.key, actor=alice, now=timezone.now())

    with pytest.raises(PortalError) as caught:
        services.api_key_rotate(key=issued.key, actor=alice, now=timezone.now())

    assert caught.value.code == "invalid_request_error"
    assert ApiKey.objects.filter(org=alice_org).count() == 1


def test_rotating_an_expired_key_is_refused(alice, alice_org):
    """Rotation keeps the expiry, so rotating an expired key would hand out a key that is already dead."""
    now = timezone.now()
    issued = issue_key(alice_org, by=alice, now=now, expires_at=now + timedelta(hours=1))

    with pytest.raises(PortalError) as caught:
        services.api_key_rotate(key=issued.key, actor=alice, now=now + timedelta(hours=2))

    assert caught.value.code == "invalid_request_error"
    assert ApiKey.objects.get(pk=issued.key.pk).replaced_by_id is None
    assert ApiKey.objects.filter(org=alice_org).count() == 1


def test_rotating_a_key_that_expires_later_keeps_its_expiry(alice, alice_org):
    now = timezone.now()
    expires = now + timedelta(days=30)
    issued = issue_key(alice_org, by=alice, now=now, expires_at=expires)

    new = services.api_key_rotate(key=issued.key, actor=alice, now=now + timedelta(days=1))

    assert new.key.expires_at == expires


# --- the plan's active-key cap ----------------------------------------------------


def test_keys_up_to_the_plan_cap_can_be_created(alice, alice_org):
    now = timezone.now()

    keys = fill_to_cap(alice_org, alice, now=now)

    assert len(keys) == cap_of(alice_org) > 0
    assert ApiKey.objects.filter(org=alice_org, status="active").count() == cap_of(alice_org)


def test_one_key_past_the_cap_is_refused(alice, alice_org):
    now = timezone.now()
    fill_to_cap(alice_org, alice, now=now)

    with pytest.raises(PortalError) as caught:
        issue_key(alice_org, by=alice, name="one too many", now=now)

    assert caught.value.code == "key_limit_reached"
    assert caught.value.status == 409
    assert not ApiKey.objects.filter(name="one too many").exists()


def test_the_cap_is_read_from_the_plan_row(alice, alice_org):
    plan = PlanSubscription.objects.get(org=alice_org, status="active").plan
    plan.max_active_keys = 1
    plan.save()
    now = timezone.now()
    issue_key(alice_org, by=alice, now=now)

    with pytest.raises(PortalError) as caught:
        issue_key(alice_org, by=alice, now=now)

    assert caught.value.code == "key_limit_reached"


def test_the_cap_is_per_org(alice, alice_org, bob, bob_org):
    now = timezone.now()
    fill_to_cap(alice_org, alice, now=now)

    issued = issue_key(bob_org, by=bob, now=now)

    assert issued.key.org == bob_org


def test_revoking_a_key_frees_a_slot(alice, alice_org):
    now = timezone.now()
    keys = fill_to_cap(alice_org, alice, now=now)

    services.api_key_revoke(key=keys[0].key, actor=alice, now=now)
    issued = issue_key(alice_org, by=alice, name="replacement", now=now)

    assert issued.key.status == ApiKey.Status.ACTIVE


def test_expired_keys_do_not_count_against_the_cap(alice, alice_org):
    now = timezone.now()
    issue_key(alice_org, by=alice, name="short-lived", now=now, expires_at=now + timedelta(hours=1))
    fill_to_cap(alice_org, alice, now=now, leave_free=1)
    later = now + timedelta(hours=2)

    issued = issue_key(alice_org, by=alice, name="after expiry", now=later)

    assert issued.key.status == ApiKey.Status.ACTIVE


def test_a_key_not_yet_expired_still_counts(alice, alice_org):
    now = timezone.now()
    issue_key(alice_org, by=alice, now=now, expires_at=now + timedelta(hours=1))
    fill_to_cap(alice_org, alice, now=now, leave_free=1)

    with pytest.raises(PortalError) as caught:
        issue_key(alice_org, by=alice, now=now + timedelta(minutes=59))

    assert caught.value.code == "key_limit_reached"


def test_rotation_at_the_cap_works(alice, alice_org):
    now = timezone.now()
    keys = fill_to_cap(alice_org, alice, now=now)

    new = services.api_key_rotate(key=keys[0].key, actor=alice, now=now)

    assert new.key.status == ApiKey.Status.ACTIVE
    assert services.active_key_count(org=alice_org, now=now) == cap_of(alice_org)


# --- auth-context invalidation ------------------------------------------------------


def test_revoke_sets_a_new_key_generation_after_commit(
    alice, alice_org, fast_state, django_capture_on_commit_callbacks
):
    """Cached auth contexts record their key's generation; a new one makes every process rebuild."""
    issued = issue_key(alice_org, by=alice)
    generation = key_generation_key(issued.key.pk)
    fast_state.set(generation, b"before")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.api_key_revoke(key=issued.key, actor=alice, now=timezone.now())
        assert fast_state.get(generation) == b"before", "changed before the revoke committed"
    for callback in callbacks:
        callback()

    assert fast_state.get(generation) not in (None, b"before")


@pytest.mark.parametrize("change", ["revoke", "disable", "rotate", "restrict"])
def test_every_key_change_sets_a_new_generation(
    change, alice, alice_org, fast_state, django_capture_on_commit_callbacks
):
    issued = issue_key(alice_org, by=alice)
    generation = key_generation_key(issued.key.pk)
    fast_state.set(generation, b"before")
    now = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        if change == "revoke":
            services.api_key_revoke(key=issued.key, actor=alice, now=now)
        elif change == "disable":
            services.api_key_disable(key=issued.key, actor=alice, now=now)
        elif change == "rotate":
            services.api_key_rotate(key=issued.key, actor=alice, now=now)
        else:
            services.api_key_update(
                key=issued.key, actor=alice, now=now, allowed_models=["oss-20b"]
            )

    assert fast_state.get(generation) not in (None, b"before")


def test_a_rename_keeps_the_generation(
    alice, alice_org, fast_state, django_capture_on_commit_callbacks
):
    issued = issue_key(alice_org, by=alice)
    generation = key_generation_key(issued.key.pk)
    fast_state.set(generation, b"before")

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(key=issued.key, actor=alice, now=timezone.now(), name="renamed")

    assert fast_state.get(generation) == b"before"


def test_clearing_allowed_models_sets_a_new_generation(
    alice, alice_org, fast_state, django_capture_on_commit_callbacks
):
    issued = issue_key(alice_org, by=alice, allowed_models=["gemma-4-26b"])
    generation = key_generation_key(issued.key.pk)
    fast_state.set(generation, b"before")

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(
            key=issued.key, actor=alice, now=timezone.now(), clear_allowed_models=True
        )

    assert fast_state.get(generation) not in (None, b"before")


def test_revoke_leaves_other_keys_generations(
    alice, alice_org, fast_state, django_capture_on_commit_callbacks
):
    revoked, kept = issue_key(alice_org, by=alice), issue_key(alice_org, by=alice)
    fast_state.set(key_generation_key(kept.key.pk), b"kept")

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key=revoked.key, actor=alice, now=timezone.now())

    assert fast_state.get(key_generation_key(kept.key.pk)) == b"kept"


# --- concurrency -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_at_one_below_the_cap_admit_exactly_one(alice, alice_org):
    if connection.vendor == "sqlite":
        if IN_CI:
            pytest.fail("CI must run this on Postgres")
        pytest.skip(
            "needs Postgres: the cap is held by SELECT ... FOR UPDATE on the org row, which SQLite "
            "ignores (CI runs this on Postgres)"
        )
    now = timezone.now()
    fill_to_cap(alice_org, alice, now=now, leave_free=1)
    workers = 6
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            issue_key(alice_org, by=alice, name=f"race {i}", now=now)
            outcome = "created"
        except PortalError as error:
            outcome = error.code
        except Exception as error:  # reported in the assertion below
            outcome = repr(error)
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["created"] + ["key_limit_reached"] * (workers - 1), outcomes
    assert services.active_key_count(org=alice_org, now=now) == cap_of(alice_org)
