"""KEY_PROVIDER=unkey through the real `unkey.py` SDK, answered by a fake Unkey in Unkey's v2
shapes: what is issued and stored, what each verification code becomes, revocation before
Unkey propagates, and Unkey slow or down under both failure modes."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from apikeys import material, services, unkey
from apikeys.models import ApiKey
from apikeys.providers import get_provider
from metering.models import RequestLog
from portal.errors import PortalError
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.unkey_fake import FakeUnkey, FakeUnkeyServer, use_unkey

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Who am I?"}]


@pytest.fixture
def tenant(unkey_fake, router_url):
    """A loose-plan tenant whose one key Unkey issued, and a catalog to spend it on."""
    seeding.catalog(router_urls=[router_url])
    return seeding.tenant()


def chat(secret: str, **body):
    return Client().post(
        "/v1/chat/completions",
        data=json.dumps({"model": seeding.MODEL, "messages": MESSAGES, "max_tokens": 4, **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def models(secret: str):
    return Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")


def refused(response) -> tuple[int, str, str]:
    error = assert_stable_error(response.json())
    return response.status_code, error["code"], error["type"]


def stored_text() -> str:
    """Every value of every row of every table, as text."""
    return "\n".join(
        json.dumps(row, default=str)
        for model in apps.get_models()
        for row in model.objects.all().values()
    )


# --- issuing ---------------------------------------------------------------------------------


def test_create_asks_unkey_for_a_key_of_the_org_with_the_plans_limits(unkey_fake, alice, alice_org):
    issued = services.api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now())

    [sent] = unkey_fake.calls_to("keys.createKey")
    assert sent["apiId"] == unkey_fake.api_id and sent["prefix"] == "ctr_live"
    assert sent["externalId"] == str(alice_org.pk) and sent["name"] == "ci"
    assert sent["meta"] == {
        "portal_key_id": str(issued.key.pk),
        "org_id": str(alice_org.pk),
        "plan": "free",
        "status": "active",
    }
    assert sent["ratelimits"] == [  # the free plan: 10 requests a minute, 20 per 5 minutes
        {"name": "requests", "limit": 10, "duration": 60_000, "autoApply": False},
        {"name": "window", "limit": 20, "duration": 300_000, "autoApply": True},
    ]
    assert issued.plaintext.startswith("ctr_live_")
    assert not material.looks_like_key(issued.plaintext)  # Unkey's format, not the local one


def test_the_portal_stores_unkeys_key_id_prefix_and_last_four_and_never_the_key(
    unkey_fake, alice, alice_org
):
    issued = services.api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now())

    row = ApiKey.objects.get(pk=issued.key.pk)
    [unkey_key] = unkey_fake.keys.values()
    assert (row.provider, row.external_id, row.key_hash) == ("unkey", unkey_key.key_id, None)
    assert (row.prefix, row.last_four) == (issued.plaintext[:13], issued.plaintext[-4:])
    text = stored_text()
    assert issued.plaintext not in text and issued.plaintext[len("ctr_live_") :] not in text
    assert material.hash_secret(issued.plaintext) not in text  # the HMAC only names fast state
    assert AuditEvent.objects.filter(action="api_key.create").exists()


def test_the_plaintext_is_shown_once_by_the_dashboard(unkey_fake, alice, alice_org, api):
    client = api.as_user(alice)

    created = client.post(f"/api/v1/orgs/{alice_org.pk}/keys", {"name": "web"}, format="json")
    listed = client.get(f"/api/v1/orgs/{alice_org.pk}/keys")

    assert created.status_code == 201, created.content
    secret = created.json()["key"]
    assert secret.startswith("ctr_live_") and created.json()["prefix"] == secret[:13]
    assert secret not in listed.content.decode() and secret[-8:] not in listed.content.decode()


def test_expiry_is_given_to_unkey_too(unkey_fake, alice, alice_org):
    expires_at = (timezone.now() + timedelta(days=3)).replace(microsecond=0)

    services.api_key_create(
        org=alice_org, created_by=alice, name="ci", now=timezone.now(), expires_at=expires_at
    )

    assert unkey_fake.calls_to("keys.createKey")[0]["expires"] == int(expires_at.timestamp() * 1000)


def test_rotate_issues_a_new_unkey_key_and_disables_the_old_one_after_commit(
    unkey_fake, alice, alice_org, django_capture_on_commit_callbacks
):
    old = services.api_key_create(org=alice_org, created_by=alice, name="ci", now=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        new = services.api_key_rotate(key=old.key, actor=alice, now=timezone.now())
        assert not unkey_fake.calls_to("keys.updateKey"), (
            "Unkey heard of the revocation before commit"
        )
    for callback in callbacks:
        callback()

    assert (
        new.key.external_id != old.key.external_id
        and len(unkey_fake.calls_to("keys.createKey")) == 2
    )
    [update] = unkey_fake.calls_to("keys.updateKey")
    assert update["keyId"] == old.key.external_id and update["enabled"] is False
    assert update["meta"]["status"] == "revoked" and update["meta"]["portal_key_id"] == str(
        old.key.pk
    )
    text = stored_text()
    for plaintext in (old.plaintext, new.plaintext):
        assert plaintext not in text and material.hash_secret(plaintext) not in text


def test_create_while_unkey_is_down_is_a_503_and_creates_nothing(unkey_fake, alice, alice_org, api):
    unkey_fake.outage = 503

    response = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", {"name": "web"}, format="json"
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "key_service_unavailable"
    assert response["retry-after"] == "5"
    assert not ApiKey.objects.exists()


# --- verification: every code ------------------------------------------------------------------


def test_a_valid_key_is_served_with_unkeys_request_limits_in_the_headers(unkey_fake, tenant):
    unkey_fake.key(tenant.key.external_id).ratelimits["requests"]["limit"] = 7  # tell the two apart

    first, second = chat(tenant.secret), chat(tenant.secret)

    assert first.status_code == second.status_code == 200, first.content
    assert first["x-ratelimit-limit-requests"] == "7"
    assert (first["x-ratelimit-remaining-requests"], second["x-ratelimit-remaining-requests"]) == (
        "6",
        "5",
    )
    assert first["x-ratelimit-reset-requests"] in ("59s", "1m0s")
    assert first["x-ratelimit-limit-tokens"] == "100000000"  # the Portal still answers for tokens
    verify = unkey_fake.calls_to("keys.verifyKey")[-1]
    assert verify["ratelimits"] == [{"name": "requests", "cost": 1}]
    log = RequestLog.objects.get(request_id=first["x-request-id"])
    assert (log.api_key_id, log.org_id) == (tenant.key.pk, tenant.org.pk)


def test_listing_models_checks_the_key_without_spending_its_rate_limit(unkey_fake, tenant):
    assert models(tenant.secret).status_code == 200
    assert models(tenant.secret).status_code == 200

    assert unkey_fake.calls_to("keys.verifyKey")[-1]["ratelimits"] == [
        {"name": "requests", "cost": 0}
    ]
    assert chat(tenant.secret)["x-ratelimit-remaining-requests"] == "9999"


@pytest.mark.parametrize(
    "unkey_code, status, code, type_",
    [
        ("NOT_FOUND", 401, "invalid_api_key", "invalid_request_error"),
        ("FORBIDDEN", 403, "permission_denied", "permission_error"),
        ("INSUFFICIENT_PERMISSIONS", 403, "permission_denied", "permission_error"),
        ("USAGE_EXCEEDED", 429, "insufficient_quota", "insufficient_quota"),
        ("DISABLED", 403, "api_key_disabled", "permission_error"),
        ("EXPIRED", 401, "api_key_expired", "invalid_request_error"),
        ("SOMETHING_NEW", 401, "invalid_api_key", "invalid_request_error"),  # unknown: refused
    ],
)
def test_each_refusing_code_is_a_stable_error(unkey_fake, tenant, unkey_code, status, code, type_):
    unkey_fake.force_code = unkey_code

    response = chat(tenant.secret)

    assert refused(response) == (status, code, type_)
    assert response["x-request-id"].startswith("req_")
    logged = RequestLog.objects.filter(request_id=response["x-request-id"])
    if code == "invalid_api_key":
        assert not logged.exists()  # not a key we serve: metrics and sampled logs only
    else:
        assert logged.get().error_code == code
    if code == "insufficient_quota":
        assert response["x-should-retry"] == "false"
    assert models(tenant.secret).status_code == status


def test_an_unknown_code_is_logged(unkey_fake, tenant, caplog):
    unkey_fake.force_code = "SOMETHING_NEW"

    with caplog.at_level(logging.WARNING, logger="apikeys.unkey"):
        chat(tenant.secret)

    assert "SOMETHING_NEW" in caplog.text
    assert tenant.secret not in caplog.text


def test_rate_limited_is_a_429_with_unkeys_limit_and_retry_after(unkey_fake, router_url):
    seeding.catalog(router_urls=[router_url])
    tight = seeding.tenant(on_plan=seeding.plan("tight", requests_per_minute=2))
    chat(tight.secret), chat(tight.secret)

    response = chat(tight.secret)

    assert refused(response) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert "requests per minute" in response.json()["error"]["message"]
    assert (response["x-ratelimit-limit-requests"], response["x-ratelimit-remaining-requests"]) == (
        "2",
        "0",
    )
    assert 1 <= int(response["retry-after"]) <= 60 and int(response["retry-after-ms"]) > 0
    assert not response.has_header("x-should-retry")


def test_unkeys_short_window_applies_without_being_named(unkey_fake, tenant):
    unkey_fake.key(tenant.key.external_id).ratelimits["window"]["limit"] = (
        1  # the Portal allows 100000
    )
    assert chat(tenant.secret).status_code == 200

    response = chat(tenant.secret)

    assert refused(response) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert "short window" in response.json()["error"]["message"]
    assert int(response["retry-after"]) > 60  # the 5-minute window's reset, not the minute's
    assert unkey_fake.calls_to("keys.verifyKey")[-1]["ratelimits"] == [
        {"name": "requests", "cost": 1}
    ]


def test_a_key_that_is_not_an_unkey_key_is_refused_without_asking_unkey(unkey_fake):
    for secret in ("sk-not-ours", "ctr_live_", "ctr_live_" + "x" * 300, "ctr_live_\x00abc"):
        assert refused(chat(secret))[:2] == (401, "invalid_api_key")

    assert not unkey_fake.calls_to("keys.verifyKey")


def test_keys_issued_locally_before_the_switch_keep_working(settings, router_url):
    seeding.catalog(router_urls=[router_url])
    local = seeding.tenant()  # KEY_PROVIDER is local here
    fake = FakeUnkey()
    use_unkey(settings)
    unkey.set_http_client_for_tests(fake.http_client())
    try:
        assert chat(local.secret).status_code == 200
        assert refused(chat("ctr_live_" + "A" * 43))[:2] == (401, "invalid_api_key")
        assert len(fake.calls_to("keys.verifyKey")) == 2
    finally:
        unkey.set_http_client_for_tests(None)


# --- revoke, disable, enable ---------------------------------------------------------------------


def test_a_revoked_key_is_refused_on_the_next_request_while_unkey_still_says_valid(
    unkey_fake, tenant, django_capture_on_commit_callbacks
):
    assert chat(tenant.secret).status_code == 200  # the gateway holds a live context
    unkey_fake.lagging = True  # Unkey's edges take up to 30 s

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key=tenant.key, actor=None, now=timezone.now())

    assert unkey.verify_key(tenant.secret, cost=0).code == "VALID"
    assert refused(chat(tenant.secret))[:2] == (401, "api_key_revoked")
    assert refused(models(tenant.secret))[:2] == (401, "api_key_revoked")
    unkey_fake.propagate()
    assert unkey.verify_key(tenant.secret, cost=0).code == "DISABLED"
    assert refused(chat(tenant.secret))[:2] == (401, "api_key_revoked")  # now Unkey says so too


def test_disable_and_enable_reach_unkey_after_commit(
    unkey_fake, tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_disable(key=tenant.key, actor=None, now=timezone.now(), reason="audit")
    disabled = unkey_fake.key(tenant.key.external_id)
    assert (disabled.enabled, disabled.meta["status"]) == (False, "disabled")
    assert refused(chat(tenant.secret))[:2] == (403, "api_key_disabled")

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_enable(key=tenant.key, actor=None, now=timezone.now())

    assert (disabled.enabled, disabled.meta["status"]) == (True, "active")
    assert chat(tenant.secret).status_code == 200


def test_a_change_that_rolls_back_tells_unkey_nothing(
    unkey_fake, tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.api_key_disable(key=tenant.key, actor=None, now=timezone.now())
    # The test's transaction never commits: dropping the callbacks is what a rollback does.
    assert callbacks and not unkey_fake.calls_to("keys.updateKey")


def test_unkey_down_during_a_revoke_still_revokes_in_the_portal(
    unkey_fake, tenant, django_capture_on_commit_callbacks, caplog
):
    unkey_fake.outage = "timeout"

    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_revoke(key=tenant.key, actor=None, now=timezone.now())

    assert key.status == ApiKey.Status.REVOKED
    assert "sync_unkey_keys" in caplog.text
    unkey_fake.outage = None
    assert unkey_fake.key(tenant.key.external_id).enabled  # drift, for sync_unkey_keys
    assert refused(chat(tenant.secret))[:2] == (401, "api_key_revoked")


# --- Unkey slow or down ---------------------------------------------------------------------------

OUTAGES = ["timeout", "down", 500, 502, 503, 429]


@pytest.mark.parametrize("outage", OUTAGES)
def test_fail_closed_answers_503_and_asks_unkey_once(unkey_fake, tenant, router_url, outage):
    assert chat(tenant.secret).status_code == 200
    unkey_fake.outage = outage
    before = len(unkey_fake.calls)
    served = _completions(router_url)

    response = chat(tenant.secret)

    assert refused(response) == (503, "key_service_unavailable", "service_unavailable")
    assert response["retry-after"] == "5"
    assert (
        RequestLog.objects.get(request_id=response["x-request-id"]).error_code
        == "key_service_unavailable"
    )
    assert _completions(router_url) == served
    assert len(unkey_fake.calls) - before == (
        0 if outage in ("timeout", "down") else 1
    )  # no retries
    listing = models(tenant.secret)
    assert refused(listing)[:2] == (503, "key_service_unavailable")
    assert listing["retry-after"] == "5"


@pytest.mark.parametrize("outage", OUTAGES)
def test_fail_open_admits_keys_verified_lately_and_nothing_else(
    unkey_fake, settings, router_url, outage
):
    settings.UNKEY_FAILURE_MODE = "open"
    seeding.catalog(router_urls=[router_url])
    seen = seeding.tenant("seen@example.com")
    unseen = seeding.tenant("unseen@example.com")
    assert chat(seen.secret).status_code == 200
    unkey_fake.outage = outage

    assert chat(seen.secret).status_code == 200
    assert refused(chat(unseen.secret))[:2] == (503, "key_service_unavailable")
    assert refused(chat("ctr_live_neverissued"))[:2] == (503, "key_service_unavailable")


def test_fail_open_forgets_a_key_after_the_window(unkey_fake, settings, tenant, fast_state):
    settings.UNKEY_FAILURE_MODE = "open"
    assert chat(tenant.secret).status_code == 200
    unkey_fake.outage = 503
    assert chat(tenant.secret).status_code == 200

    for name in fast_state.scan_iter(match=settings.FAST_STATE_PREFIX + "unkeyok:*"):
        assert 0 < fast_state.ttl(name) <= settings.UNKEY_FAIL_OPEN_SECONDS
        fast_state.delete(name)  # as its TTL would

    assert refused(chat(tenant.secret))[:2] == (503, "key_service_unavailable")


def test_fail_open_forgets_a_key_unkey_refused(unkey_fake, settings, tenant):
    settings.UNKEY_FAILURE_MODE = "open"
    assert chat(tenant.secret).status_code == 200
    unkey_fake.force_code = "DISABLED"
    assert refused(chat(tenant.secret))[:2] == (403, "api_key_disabled")

    unkey_fake.force_code, unkey_fake.outage = None, 503

    assert refused(chat(tenant.secret))[:2] == (503, "key_service_unavailable")


def test_fail_open_still_runs_the_portals_revocation(
    unkey_fake, settings, tenant, django_capture_on_commit_callbacks
):
    settings.UNKEY_FAILURE_MODE = "open"
    assert chat(tenant.secret).status_code == 200
    unkey_fake.outage = "down"

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key=tenant.key, actor=None, now=timezone.now())

    assert refused(chat(tenant.secret))[:2] == (401, "api_key_revoked")


def test_a_slow_unkey_costs_one_hard_timeout(settings, tenant, unkey_fake):
    """Over real HTTP: Unkey holds the request far longer than UNKEY_TIMEOUT_MS."""
    server = FakeUnkeyServer(unkey_fake).start()
    settings.UNKEY_BASE_URL, settings.UNKEY_TIMEOUT_MS = server.url, 300
    unkey.set_http_client_for_tests(None)
    try:
        assert chat(tenant.secret).status_code == 200
        unkey_fake.outage, unkey_fake.outage_seconds = "timeout", 5.0
        before = len(unkey_fake.calls)
        started = time.monotonic()

        response = chat(tenant.secret)

        assert refused(response)[:2] == (503, "key_service_unavailable")
        assert time.monotonic() - started < 1.5
        assert len(unkey_fake.calls) == before  # a held request is not recorded: none was retried
    finally:
        unkey_fake.outage = None
        server.stop()


def test_the_sdk_is_built_without_retries_and_with_the_timeout(unkey_fake, settings):
    settings.UNKEY_TIMEOUT_MS = 750

    config = unkey.sdk().sdk_configuration

    assert config.retry_config.strategy == "none"
    assert config.timeout_ms == 750
    assert unkey.sdk() is unkey.sdk()  # one per process


def test_authenticate_never_raises_anything_but_a_portal_error(unkey_fake, tenant, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the SDK broke")

    monkeypatch.setattr(unkey.sdk().keys, "verify_key", broken)

    with pytest.raises(PortalError) as info:
        get_provider().authenticate(tenant.secret)
    assert info.value.code == "key_service_unavailable"


def _completions(router_url: str) -> int:
    import requests

    return requests.get(f"{router_url}/_sim/stats", timeout=5).json()["completions"]
