"""The staff controls and views in the Django admin, in process: who may reach them, what
they ask for, what they write, and what they never show. The same controls observed on a
live gateway process are in test_controls_live.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Organization, Plan
from apikeys.models import ApiKey
from apikeys.services import api_key_create
from metering.models import RequestLog, UsageEvent
from ops import services
from ops.models import AccessPause
from pools import services as pool_services
from pools.health import breaker_key, inflight_key
from pools.models import Model, Router, RouterHealth, RouterPool

pytestmark = pytest.mark.django_db

ROUTER_KEY = "rk-never-shown-7f3a"


@pytest.fixture
def key(alice, alice_org):
    return api_key_create(org=alice_org, created_by=alice, name="prod", now=timezone.now())


@pytest.fixture
def catalog(db):
    model = pool_services.model_create(name="ops-model", display_name="Ops Model")
    pool = pool_services.pool_create(name="ops-pool")
    router = pool_services.router_create(
        pool=pool, name="r1", base_url="http://127.0.0.1:9", api_key=ROUTER_KEY
    )
    pool_services.route_create(model=model, pool=pool, session_id=1)
    return model, pool, router


def changelist(model: str) -> str:
    return reverse(f"admin:{model.replace('.', '_')}_changelist")


# --- who may reach the admin and the controls -------------------------------------------------


STAFF_PAGES = [
    "/admin/",
    "/admin/ops/dashboard/",
    "/admin/ops/accesspause/",
    "/admin/apikeys/apikey/",
    "/admin/accounts/auditevent/",
    "/admin/pools/router/",
]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(path, plain_user):
    anonymous = Client().get(path)
    signed_in = Client()
    signed_in.force_login(plain_user)
    not_staff = signed_in.get(path)
    for response in (anonymous, not_staff):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_non_staff_cannot_run_a_control(plain_user, key):
    client = Client()
    client.force_login(plain_user)
    response = client.post(
        changelist("apikeys.apikey"),
        {
            "action": "revoke_keys",
            "_selected_action": [str(key.key.pk)],
            "confirm": "yes",
            "reason": "x",
        },
    )
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    pause = client.post("/admin/ops/accesspause/", {"op": "pause", "message": "x", "reason": "x"})
    assert pause.status_code == 302
    assert ApiKey.objects.get(pk=key.key.pk).status == "active"
    assert not AccessPause.objects.filter(active=True).exists()
    assert not AuditEvent.objects.filter(actor_type="staff").exists()


def test_staff_without_change_permission_sees_keys_but_no_controls(viewer_user, key):
    client = Client()
    client.force_login(viewer_user)
    page = client.get(changelist("apikeys.apikey"))
    assert page.status_code == 200 and b"prod" in page.content
    assert b"revoke_keys" not in page.content
    client.post(
        changelist("apikeys.apikey"),
        {
            "action": "revoke_keys",
            "_selected_action": [str(key.key.pk)],
            "confirm": "yes",
            "reason": "x",
        },
    )
    assert ApiKey.objects.get(pk=key.key.pk).status == "active"
    assert client.get("/admin/ops/accesspause/").status_code == 403


def test_the_ops_dashboard_needs_its_own_permission(viewer_user):
    """Staff status alone does not show the dashboard: `ops.view_dashboard` does."""
    client = Client()
    client.force_login(viewer_user)
    assert client.get("/admin/ops/dashboard/").status_code == 403
    assert b"Ops dashboard</a>" not in client.get(changelist("apikeys.apikey")).content

    viewer_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(get_user_model().objects.get(pk=viewer_user.pk))  # fresh permission cache
    assert client.get("/admin/ops/dashboard/").status_code == 200
    assert b"Ops dashboard</a>" in client.get(changelist("apikeys.apikey")).content


# --- controls ask for a reason and audit it ----------------------------------------------------


def test_a_control_asks_for_a_reason_and_does_nothing_without_one(staff_client, key):
    page = staff_client.action("apikeys.apikey", "disable_keys", [key.key], confirm=False)
    assert key.key.masked.encode() in page.content  # the confirmation lists what it will change

    again = staff_client.post(
        changelist("apikeys.apikey"),
        {
            "action": "disable_keys",
            "_selected_action": [str(key.key.pk)],
            "confirm": "yes",
            "reason": "   ",
        },
    )
    assert again.status_code == 200 and b"This field is required" in again.content
    assert ApiKey.objects.get(pk=key.key.pk).status == "active"
    assert not AuditEvent.objects.filter(action="api_key.disable").exists()


@pytest.mark.parametrize(
    ("action", "status", "audit_action"),
    [
        ("disable_keys", "disabled", "api_key.disable"),
        ("revoke_keys", "revoked", "api_key.revoke"),
    ],
)
def test_key_controls(staff_client, staff_user, key, action, status, audit_action):
    response = staff_client.action(
        "apikeys.apikey", action, [key.key], reason="leaked in a public repo"
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.key.pk).status == status
    event = AuditEvent.objects.get(action=audit_action)
    assert (event.actor_type, event.actor_id, event.reason) == (
        "staff",
        str(staff_user.pk),
        "leaked in a public repo",
    )
    assert event.before["status"] == "active" and event.after["status"] == status
    assert event.created_at is not None and event.target_id == str(key.key.pk)
    follow = staff_client.get(response["Location"])
    assert f"1 API key {status}." in follow.content.decode()


def test_key_enable_after_disable(staff_client, key):
    staff_client.action("apikeys.apikey", "disable_keys", [key.key], reason="suspicious")
    staff_client.action("apikeys.apikey", "enable_keys", [key.key], reason="owner confirmed")
    assert ApiKey.objects.get(pk=key.key.pk).status == "active"
    assert AuditEvent.objects.get(action="api_key.enable").reason == "owner confirmed"


def test_org_controls_pause_resume_and_change_plan(staff_client, alice_org):
    staff_client.action("accounts.organization", "pause_orgs", [alice_org], reason="chargeback")
    assert Organization.objects.get(pk=alice_org.pk).status == "paused"
    staff_client.action("accounts.organization", "resume_orgs", [alice_org], reason="paid")
    assert Organization.objects.get(pk=alice_org.pk).status == "active"

    pro = Plan.objects.get(code="pro")
    page = staff_client.action("accounts.organization", "change_plan", [alice_org], confirm=False)
    assert b'name="plan"' in page.content
    staff_client.action(
        "accounts.organization", "change_plan", [alice_org], plan=pro.pk, reason="upgrade deal"
    )
    event = AuditEvent.objects.get(action="org.change_plan")
    assert (event.before, event.after, event.reason) == (
        {"plan": "free"},
        {"plan": "pro"},
        "upgrade deal",
    )
    listing = staff_client.get(changelist("accounts.organization"))
    assert b"Pro" in listing.content


def test_catalog_controls(staff_client, catalog):
    model, pool, router = catalog
    staff_client.action("pools.model", "disable_models", [model], reason="bad outputs")
    staff_client.action("pools.routerpool", "drain_pools", [pool], reason="router upgrade")
    staff_client.action("pools.router", "disable_routers", [router], reason="flapping")
    assert Model.objects.get(pk=model.pk).status == "disabled"
    assert RouterPool.objects.get(pk=pool.pk).status == "draining"
    assert Router.objects.get(pk=router.pk).enabled is False

    staff_client.action("pools.model", "enable_models", [model], reason="fixed")
    staff_client.action("pools.routerpool", "disable_pools", [pool], reason="retired")
    staff_client.action("pools.routerpool", "activate_pools", [pool], reason="back")
    staff_client.action("pools.router", "enable_routers", [router], reason="stable")
    assert Model.objects.get(pk=model.pk).status == "enabled"
    assert RouterPool.objects.get(pk=pool.pk).status == "active"
    assert Router.objects.get(pk=router.pk).enabled is True
    assert list(AuditEvent.objects.order_by("id").values_list("action", "reason")) == [
        ("model.disable", "bad outputs"),
        ("pool.drain", "router upgrade"),
        ("router.disable", "flapping"),
        ("model.enable", "fixed"),
        ("pool.disable", "retired"),
        ("pool.activate", "back"),
        ("router.enable", "stable"),
    ]


def test_control_fields_are_read_only_in_change_forms(staff_client, catalog, alice_org):
    model, pool, router = catalog
    for url in (
        reverse("admin:pools_model_change", args=[model.pk]),
        reverse("admin:pools_routerpool_change", args=[pool.pk]),
        reverse("admin:pools_router_change", args=[router.pk]),
        reverse("admin:accounts_organization_change", args=[alice_org.pk]),
    ):
        page = staff_client.get(url).content
        assert b'name="status"' not in page and b'name="enabled"' not in page, url


def test_router_breaker_reset(
    staff_client, catalog, fast_state, django_capture_on_commit_callbacks
):
    _, _, router = catalog
    fast_state.hset(breaker_key(router.pk), mapping={"state": "open", "opened": 1, "fails": 9})
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.action("pools.router", "reset_breakers", [router], reason="router replaced")
    assert not fast_state.exists(breaker_key(router.pk))
    event = AuditEvent.objects.get(action="router.reset_breaker")
    assert event.before == {"breaker": "half-open"} and event.reason == "router replaced"


def test_global_pause_page(staff_client, fast_state, django_capture_on_commit_callbacks):
    page = staff_client.get("/admin/ops/accesspause/")
    assert b"Pause all access" in page.content

    missing_reason = staff_client.post(
        "/admin/ops/accesspause/", {"op": "pause", "message": "Back soon"}
    )
    assert missing_reason.status_code == 200 and b"This field is required" in missing_reason.content
    assert not AccessPause.objects.filter(active=True).exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = staff_client.post(
            "/admin/ops/accesspause/",
            {"op": "pause", "message": "Back soon", "reason": "incident 7"},
        )
    assert done.status_code == 302
    assert fast_state.get(services.pause_key()) == b"Back soon"
    banner = staff_client.get("/admin/").content
    assert b"Global access pause is ON" in banner and b"Back soon" in banner

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post("/admin/ops/accesspause/", {"op": "resume", "reason": "incident closed"})
    assert fast_state.get(services.pause_key()) is None
    assert b"Global access pause is ON" not in staff_client.get("/admin/").content
    assert list(AuditEvent.objects.values_list("action", "reason")) == [
        ("access.pause", "incident 7"),
        ("access.resume", "incident closed"),
    ]


# --- what staff see -------------------------------------------------------------------------------


def test_keys_by_org_with_status_and_last_use(staff_client, key, bob, bob_org):
    used_at = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.key.pk).update(last_used_at=used_at)  # metering keeps it current
    api_key_create(org=bob_org, created_by=bob, name="bob-key", now=timezone.now())
    page = staff_client.get(changelist("apikeys.apikey") + f"?org={key.key.org_id}")
    assert page.status_code == 200
    content = page.content.decode()
    assert "prod" in content and "bob-key" not in content
    assert "active" in content and key.key.masked in content
    assert page.context["cl"].result_list[0].last_used_at == used_at
    assert "field-last_used_at" in content
    org_page = staff_client.get(changelist("accounts.organization")).content.decode()
    assert f"?org={key.key.org_id}" in org_page  # each org links to its keys


def test_orgs_with_plan_and_usage_this_period(staff_client, alice_org, bob_org):
    now = timezone.now()
    for i, tokens in enumerate((100, 250)):
        UsageEvent.objects.create(
            request_id=f"req_{i:024d}",
            org=alice_org,
            model_name="m",
            prompt_tokens=tokens,
            completion_tokens=0,
            cost=0,
            created_at=now,
        )
    page = staff_client.get(changelist("accounts.organization") + "?o=-5")  # by usage
    rows = {org.pk: org for org in page.context["cl"].result_list}
    assert (rows[alice_org.pk].period_requests, rows[alice_org.pk].period_tokens) == (2, 350)
    assert (rows[bob_org.pk].period_requests, rows[bob_org.pk].period_tokens) == (0, 0)
    assert rows[alice_org.pk].plan_name == "Free"


def test_request_logs_search_by_request_id(staff_client):
    now = timezone.now()
    wanted = "req_" + "Q" * 23 + "1"
    for request_id in (wanted, "req_" + "Q" * 23 + "2"):
        RequestLog.objects.create(
            request_id=request_id,
            endpoint="chat",
            status_code=502,
            error_code="upstream_error",
            latency_ms=7,
            created_at=now,
            router_id=3,
        )
    page = staff_client.get(changelist("metering.requestlog"), {"q": f"  {wanted} "})
    assert [row.request_id for row in page.context["cl"].result_list] == [wanted]
    assert b"upstream_error" in page.content


def test_routers_show_health_inflight_and_breaker(staff_client, catalog, fast_state):
    _, _, router = catalog
    now = timezone.now()
    RouterHealth.objects.create(
        router=router, ok=False, latency_ms=2001, consecutive_failures=3, checked_at=now
    )
    now_ms = int(now.timestamp() * 1000)
    fast_state.zadd(inflight_key(router.pk), {"req_1": now_ms + 60_000, "req_2": now_ms + 60_000})
    fast_state.hset(breaker_key(router.pk), mapping={"state": "open", "opened": now_ms, "fails": 5})
    content = staff_client.get(changelist("pools.router")).content.decode()
    assert "2001 ms" in content and "3 failed in a row" in content
    assert "open (5 fails)" in content
    assert '<td class="field-inflight">2</td>' in content
    pools = staff_client.get(changelist("pools.routerpool")).content.decode()
    assert '<td class="field-inflight">2</td>' in pools and "0 / 1" in pools


def test_the_audit_log_is_read_only(staff_client, alice_org):
    services.access_pause(message="m", actor=None, reason="system test", now=timezone.now())
    event = AuditEvent.objects.get()
    listing = staff_client.get(changelist("accounts.auditevent"))
    assert b"system test" in listing.content
    assert reverse("admin:accounts_auditevent_add").encode() not in listing.content
    detail = staff_client.get(reverse("admin:accounts_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200 and b'name="reason"' not in detail.content
    staff_client.post(
        reverse("admin:accounts_auditevent_change", args=[event.pk]), {"reason": "rewritten"}
    )
    assert AuditEvent.objects.get().reason == "system test"
    assert (
        staff_client.post(reverse("admin:accounts_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    assert AuditEvent.objects.count() == 1


def test_secrets_are_never_shown(staff_client, key, catalog):
    _, _, router = catalog
    stored = ApiKey.objects.get(pk=key.key.pk)
    pages = [
        staff_client.get(changelist("apikeys.apikey")),
        staff_client.get(reverse("admin:apikeys_apikey_change", args=[key.key.pk])),
        staff_client.get(changelist("pools.router")),
        staff_client.get(reverse("admin:pools_router_change", args=[router.pk])),
        staff_client.get(changelist("accounts.auditevent")),
        staff_client.get("/admin/ops/dashboard/"),
    ]
    for page in pages:
        assert page.status_code == 200
        for secret in (key.plaintext, stored.key_hash, ROUTER_KEY, router.api_key_sealed):
            assert secret.encode() not in page.content
