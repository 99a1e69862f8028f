"""Every staff control, run through the admin by a staff user in this process, observed on
the next request to a gateway served by a separate process (gunicorn on the same
database and fast state), then undone the same way."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from accounts.models import AuditEvent, Plan
from ops.models import AccessPause
from ops.services import pause_key
from ops.tasks import sync_access_pause
from pools.models import Model, Router, RouterPool
from tests.factories import seeding
from tests.support import live
from tests.support.errors import assert_stable_error

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def reasons() -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(actor_type="staff")
        .order_by("id")
        .values_list("action", "reason", "actor_label")
    )


def test_key_disable_enable_and_revoke(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    key = stack.tenant.key
    assert stack.code() == (200, "")

    staff_client.action("apikeys.apikey", "disable_keys", [key], reason="suspected leak")
    response = stack.chat()
    assert response.status_code == 403
    assert_stable_error(response.json(), code="api_key_disabled")

    staff_client.action(
        "apikeys.apikey", "enable_keys", [key], reason="owner rotated their CI secret"
    )
    assert stack.code() == (200, "")

    staff_client.action("apikeys.apikey", "revoke_keys", [key], reason="confirmed leak")
    assert stack.code() == (401, "api_key_revoked")
    assert reasons() == [
        ("api_key.disable", "suspected leak", "ops-staff"),
        ("api_key.enable", "owner rotated their CI secret", "ops-staff"),
        ("api_key.revoke", "confirmed leak", "ops-staff"),
    ]


def test_org_pause_and_resume(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    assert stack.code() == (200, "")
    staff_client.action(
        "accounts.organization", "pause_orgs", [stack.tenant.org], reason="unpaid invoice"
    )
    assert stack.code() == (403, "account_paused")
    staff_client.action("accounts.organization", "resume_orgs", [stack.tenant.org], reason="paid")
    assert stack.code() == (200, "")
    assert [a for a, _, _ in reasons()] == ["org.pause", "org.resume"]


def test_plan_change_applies_its_limits_on_the_next_request(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    assert stack.code() == (200, "")
    one_per_minute = seeding.plan("one-rpm", requests_per_minute=1)
    no_models = seeding.plan("no-models")
    Plan.objects.filter(pk=no_models.pk).update(all_models=False)  # and no access policies
    loose = seeding.plan("loose-again")

    staff_client.action(
        "accounts.organization",
        "change_plan",
        [stack.tenant.org],
        plan=one_per_minute.pk,
        reason="abuse: throttle",
    )
    response = stack.chat()  # the request made above already used this minute's one request
    assert response.status_code == 429
    assert_stable_error(response.json(), code="rate_limit_exceeded")
    assert response.headers["x-ratelimit-limit-requests"] == "1"

    staff_client.action(
        "accounts.organization",
        "change_plan",
        [stack.tenant.org],
        plan=no_models.pk,
        reason="trial",
    )
    assert stack.code() == (403, "model_not_allowed")

    staff_client.action(
        "accounts.organization", "change_plan", [stack.tenant.org], plan=loose.pk, reason="restored"
    )
    assert stack.code() == (200, "")
    plans = AuditEvent.objects.filter(action="org.change_plan", actor_type="staff").order_by("id")
    assert [(e.after["plan"], e.reason) for e in plans] == [
        ("one-rpm", "abuse: throttle"),
        ("no-models", "trial"),
        ("loose-again", "restored"),
    ]


def test_model_disable_and_enable(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway)
    model = Model.objects.get(name=live.MODEL)
    assert stack.code() == (200, "")
    staff_client.action("pools.model", "disable_models", [model], reason="bad outputs")
    assert stack.code() == (403, "model_disabled")
    assert stack.code(model=seeding.ALIAS) == (403, "model_disabled")  # aliases follow their model
    staff_client.action("pools.model", "enable_models", [model], reason="fixed")
    assert stack.code() == (200, "")


def test_router_disable_and_enable(simulators, gateway, staff_client):
    stack = live.start(simulators, gateway, routers=2)
    first, second = stack.catalog.routers
    staff_client.action("pools.router", "disable_routers", [first], reason="flapping")
    before = [sim.completions() for sim in stack.sims]
    for _ in range(6):
        assert stack.code() == (200, "")
    after = [sim.completions() for sim in stack.sims]
    assert after[0] == before[0] and after[1] == before[1] + 6  # only the enabled router served

    staff_client.action("pools.router", "disable_routers", [second], reason="both down")
    assert stack.code() == (503, "no_healthy_router")
    staff_client.action("pools.router", "enable_routers", [first, second], reason="stable again")
    assert stack.code() == (200, "")
    assert Router.objects.filter(enabled=True).count() == 2


def test_pool_drain_lets_in_flight_requests_finish(simulators, gateway, staff_client):
    # A slow stream: 40 tokens at 10 tokens/s take about four seconds.
    stack = live.start(simulators, gateway, tokens_per_second=10, completion_tokens=40)
    pool = stack.catalog.pool
    stream = stack.chat(stream=True)
    assert stream.status_code == 200
    lines = stream.iter_lines(decode_unicode=True)
    first = next(line for line in lines if line.startswith("data:"))  # the request is in flight
    assert json.loads(first[5:])["object"] == "chat.completion.chunk"
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(lines))
    reader.start()

    started = time.monotonic()
    staff_client.action("pools.routerpool", "drain_pools", [pool], reason="router upgrade")
    assert stack.code() == (503, "no_healthy_router")  # no new requests...
    assert reader.is_alive()  # (the stream was still going when the pool drained)
    reader.join(timeout=20)
    assert [line for line in rest if line][
        -1
    ] == "data: [DONE]"  # ...while the one in flight finished
    assert time.monotonic() - started < 20
    assert RouterPool.objects.get(pk=pool.pk).status == "draining"

    staff_client.action("pools.routerpool", "activate_pools", [pool], reason="upgrade done")
    assert stack.code() == (200, "")
    staff_client.action("pools.routerpool", "disable_pools", [pool], reason="retiring")
    assert stack.code() == (503, "no_healthy_router")
    staff_client.action("pools.routerpool", "activate_pools", [pool], reason="not yet")
    assert stack.code() == (200, "")
    assert [a for a, _, _ in reasons()] == [
        "pool.drain",
        "pool.activate",
        "pool.disable",
        "pool.activate",
    ]


def test_global_pause_with_a_customer_message(simulators, gateway, staff_client, fast_state):
    stack = live.start(simulators, gateway)
    assert stack.code() == (200, "")
    staff_client.post(
        "/admin/ops/accesspause/",
        {
            "op": "pause",
            "message": "Planned maintenance until 14:00 UTC.",
            "reason": "database upgrade",
        },
    )
    response = stack.chat()
    assert response.status_code == 503
    error = assert_stable_error(response.json(), code="access_paused")
    assert error["message"] == "Planned maintenance until 14:00 UTC."
    other = requests.post(  # every key, every endpoint under /v1
        f"{stack.server.url}/v1/completions",
        headers={"Authorization": "Bearer " + seeding.tenant("someone-else@example.com").secret},
        json={"model": live.MODEL, "prompt": "hi"},
        timeout=30,
    )
    assert other.status_code == 503 and other.json()["error"]["code"] == "access_paused"

    fast_state.delete(pause_key())  # fast state lost the flag: the beat task puts it back
    sync_access_pause.apply()
    assert stack.code() == (503, "access_paused")

    staff_client.post("/admin/ops/accesspause/", {"op": "resume", "reason": "upgrade finished"})
    assert stack.code() == (200, "")
    assert not AccessPause.objects.get().active
    assert reasons() == [
        ("access.pause", "database upgrade", "ops-staff"),
        ("access.resume", "upgrade finished", "ops-staff"),
    ]
