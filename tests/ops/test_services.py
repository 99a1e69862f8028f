"""The control services: each changes Postgres, writes one audit row with the reason, and
tells every gateway process after commit (catalog version, org generation, pause flag)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.invalidation import org_generation_key
from accounts.models import AuditEvent, Organization
from accounts.services import org_pause, org_resume
from ops import services
from ops.models import AccessPause
from ops.tasks import sync_access_pause
from pools import services as pool_services
from pools.catalog import catalog_version_key
from pools.models import Model, Router, RouterPool

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db):
    model = pool_services.model_create(name="ops-model", display_name="Ops Model")
    pool = pool_services.pool_create(name="ops-pool")
    router = pool_services.router_create(
        pool=pool, name="r1", base_url="http://127.0.0.1:9", api_key="rk-secret"
    )
    pool_services.route_create(model=model, pool=pool, session_id=1)
    return model, pool, router


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_org_pause_and_resume_audit_and_bump_the_org_generation(
    alice_org, staff_user, fast_state, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        org_pause(org=alice_org, actor=staff_user, reason="abuse report #12", now=now)
    generation = fast_state.get(org_generation_key(alice_org.pk))
    assert Organization.objects.get(pk=alice_org.pk).status == "paused"
    assert generation

    with django_capture_on_commit_callbacks(execute=True):
        org_resume(org=alice_org, actor=staff_user, reason="resolved", now=now)
    assert Organization.objects.get(pk=alice_org.pk).status == "active"
    assert fast_state.get(org_generation_key(alice_org.pk)) != generation

    (paused,), (resumed,) = audit("org.pause"), audit("org.resume")
    assert (paused.actor_type, paused.actor_label, paused.reason) == (
        "staff",
        "ops-staff",
        "abuse report #12",
    )
    assert (paused.before, paused.after) == ({"status": "active"}, {"status": "paused"})
    assert paused.org_id == alice_org.pk and paused.target_id == str(alice_org.pk)
    assert resumed.reason == "resolved" and resumed.after == {"status": "active"}


def test_pausing_a_paused_org_changes_nothing_and_audits_nothing(alice_org, staff_user):
    now = timezone.now()
    org_pause(org=alice_org, actor=staff_user, reason="first", now=now)
    org_pause(org=alice_org, actor=staff_user, reason="second", now=now)
    assert [e.reason for e in audit("org.pause")] == ["first"]


@pytest.mark.parametrize(
    ("control", "target", "field", "value", "action"),
    [
        (services.model_disable, "model", "status", "disabled", "model.disable"),
        (services.pool_drain, "pool", "status", "draining", "pool.drain"),
        (services.pool_disable, "pool", "status", "disabled", "pool.disable"),
        (services.router_disable, "router", "enabled", False, "router.disable"),
    ],
)
def test_catalog_controls_audit_and_bump_the_catalog_version(
    catalog,
    staff_user,
    fast_state,
    django_capture_on_commit_callbacks,
    control,
    target,
    field,
    value,
    action,
):
    model, pool, router = catalog
    obj = {"model": model, "pool": pool, "router": router}[target]
    before = fast_state.get(catalog_version_key())
    with django_capture_on_commit_callbacks(execute=True):
        control(**{target: obj}, actor=staff_user, reason="maintenance window", now=timezone.now())
    obj.refresh_from_db()
    assert getattr(obj, field) == value
    assert fast_state.get(catalog_version_key()) not in (None, before)
    (event,) = audit(action)
    assert event.reason == "maintenance window" and event.actor_label == "ops-staff"


def test_catalog_controls_come_back(catalog, staff_user):
    model, pool, router = catalog
    now = timezone.now()
    services.model_disable(model=model, actor=staff_user, reason="r", now=now)
    services.model_enable(model=model, actor=staff_user, reason="back", now=now)
    services.pool_drain(pool=pool, actor=staff_user, reason="r", now=now)
    services.pool_activate(pool=pool, actor=staff_user, reason="undrain", now=now)
    services.router_disable(router=router, actor=staff_user, reason="r", now=now)
    services.router_enable(router=router, actor=staff_user, reason="back", now=now)
    assert Model.objects.get(pk=model.pk).status == "enabled"
    assert RouterPool.objects.get(pk=pool.pk).status == "active"
    assert Router.objects.get(pk=router.pk).enabled is True
    assert [(e.action, e.before, e.after) for e in AuditEvent.objects.order_by("id")][-2:] == [
        (
            "router.disable",
            {"enabled": True, "router": "ops-pool/r1"},
            {"enabled": False, "router": "ops-pool/r1"},
        ),
        (
            "router.enable",
            {"enabled": False, "router": "ops-pool/r1"},
            {"enabled": True, "router": "ops-pool/r1"},
        ),
    ]
    assert audit("pool.activate")[0].before == {"status": "draining"}


def test_access_pause_sets_the_flag_after_commit_and_resume_clears_it(
    staff_user, fast_state, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.access_pause(
            message="  Maintenance until 14:00 UTC  ",
            actor=staff_user,
            reason="db upgrade",
            now=now,
        )
    assert fast_state.get(services.pause_key()) is None  # nothing before commit
    for callback in callbacks:
        callback()
    assert fast_state.get(services.pause_key()) == b"Maintenance until 14:00 UTC"
    pause = AccessPause.objects.get()
    assert pause.active and pause.changed_by == "ops-staff" and pause.changed_at == now

    with django_capture_on_commit_callbacks(execute=True):
        services.access_resume(actor=staff_user, reason="done", now=now)
    assert fast_state.get(services.pause_key()) is None
    assert not AccessPause.objects.get().active
    assert [
        (e.action, e.reason, e.after["active"])
        for e in AuditEvent.objects.filter(target_type="access_pause")
    ] == [
        ("access.pause", "db upgrade", True),
        ("access.resume", "done", False),
    ]


def test_the_beat_task_rebuilds_a_lost_pause_flag_and_clears_a_stale_one(staff_user, fast_state):
    services.access_pause(
        message="Down for maintenance", actor=staff_user, reason="r", now=timezone.now()
    )
    fast_state.delete(services.pause_key())  # Redis lost it

    assert sync_access_pause.apply().get() is True
    assert fast_state.get(services.pause_key()) == b"Down for maintenance"

    AccessPause.objects.update(active=False)
    assert sync_access_pause.apply().get() is False
    assert fast_state.get(services.pause_key()) is None
