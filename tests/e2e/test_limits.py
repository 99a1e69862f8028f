"""Limits hold across gateway processes: they live in Redis, not in any one process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum
from django.utils import timezone

from accounts.services import org_change_plan
from apikeys.services import api_key_revoke
from metering.models import UsageEvent
from pools.services import model_set_status
from tests.factories import seeding
from tests.support.concurrency import at_once
from tests.support.errors import assert_stable_error
from tests.support.wire import CHAT_MESSAGES, chat, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def complete(server, secret: str, *, prompt: str, max_tokens: int) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/completions",
        json={"model": seeding.MODEL, "prompt": prompt, "max_tokens": max_tokens},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def warm(servers, secret: str) -> None:
    """Each process has loaded the key's context and the catalog, with a call that counts
    against no limit (count_tokens; a /v1/models listing counts against requests/min)."""
    for server in servers:
        assert requests.post(
            f"{server.url}/v1/messages/count_tokens",
            json={"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ).ok


def test_requests_per_minute_admits_exactly_the_limit_across_two_processes(simulators, gateway):
    limit = 6
    (router,) = simulators(1)
    one, two = gateway(), gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant(on_plan=seeding.plan("six", requests_per_minute=limit))
    warm((one, two), tenant.secret)

    responses = at_once([lambda s=server: chat(s, tenant.secret) for server in (one, two) * limit])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * limit + [429] * limit
    for refused in (r for r in responses if r.status_code == 429):
        assert_stable_error(refused.json(), code="rate_limit_exceeded")
        assert int(refused.headers["retry-after"]) >= 1
    assert router.completions() == limit
    assert eventually(lambda: UsageEvent.objects.count() == limit)


def test_concurrent_requests_never_overspend_a_nearly_spent_allowance(simulators, gateway):
    # A text prompt reaches the router as is, so its count is exact: 40 characters are 10
    # tokens, and with max_tokens 6 every request's worst case (16) is what it uses.
    prompt, max_tokens, worst_case, fits = "p" * 40, 6, 16, 7
    allowance = fits * worst_case + worst_case - 1
    (router,) = simulators(1)
    one, two = gateway(), gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant(on_plan=seeding.plan("nearly-spent", weekly_tokens=allowance))
    warm((one, two), tenant.secret)

    responses = at_once(
        [
            lambda s=server: complete(s, tenant.secret, prompt=prompt, max_tokens=max_tokens)
            for server in (one, two) * 25
        ]
    )

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == fits
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    assert all(r.json()["usage"]["total_tokens"] == worst_case for r in ok)
    assert eventually(lambda: UsageEvent.objects.count() == fits)
    used = UsageEvent.objects.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    assert used["p"] + used["c"] <= allowance
    assert router.completions() == fits


def test_chat_requests_never_overspend_the_allowance_either(simulators, gateway):
    (router,) = simulators(1)
    server = gateway()
    seeding.catalog(router_urls=[router.url])
    probe = chat(server, seeding.tenant("probe@example.com").secret).json()["usage"]["total_tokens"]
    reserved = (
        len(CHAT_MESSAGES[0]["content"]) + 3
    ) // 4 + 4  # what the gateway reserves: text + max_tokens
    # Room for 8 requests as served plus one reservation: a 9th is admitted, and it must fit.
    allowance = 8 * probe + reserved + 1
    tenant = seeding.tenant(on_plan=seeding.plan("small", weekly_tokens=allowance))

    statuses = [chat(server, tenant.secret).status_code for _ in range(12)]

    assert statuses.count(200) >= 8 and set(statuses) <= {200, 429}
    used = UsageEvent.objects.filter(org=tenant.org).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    assert used["p"] + used["c"] <= allowance, (
        f"{probe} tokens served per request, {reserved} reserved"
    )


def test_a_revoked_key_is_refused_by_every_process_on_its_next_request(simulators, gateway):
    (router,) = simulators(1)
    one, two = gateway(), gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()
    assert chat(one, tenant.secret).status_code == 200  # both processes hold a live context
    assert chat(two, tenant.secret).status_code == 200

    api_key_revoke(key=tenant.key, actor=None, now=timezone.now())
    refused = [chat(two, tenant.secret), chat(one, tenant.secret)]

    for response in refused:
        assert response.status_code == 401
        assert_stable_error(response.json(), code="api_key_revoked")
    assert router.completions() == 2


def test_plan_and_model_changes_apply_on_the_next_request_in_every_process(simulators, gateway):
    (router,) = simulators(1)
    one, two = gateway(), gateway()
    catalog = seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()
    assert [chat(one, tenant.secret).status_code, chat(two, tenant.secret).status_code] == [
        200,
        200,
    ]

    model_set_status(model=catalog.model, status="disabled")
    disabled = [chat(two, tenant.secret), chat(one, tenant.secret)]
    model_set_status(model=catalog.model, status="enabled")
    enabled = [chat(two, tenant.secret), chat(one, tenant.secret)]
    # Four requests so far this minute; the new plan allows four.
    org_change_plan(
        org=tenant.org,
        plan=seeding.plan("four", requests_per_minute=4),
        actor=None,
        now=timezone.now(),
    )
    over = [chat(two, tenant.secret), chat(one, tenant.secret)]

    for response in disabled:
        assert response.status_code == 403
        assert_stable_error(response.json(), code="model_disabled", param="model")
    assert [r.status_code for r in enabled] == [200, 200]
    for response in over:
        assert response.status_code == 429
        assert_stable_error(response.json(), code="rate_limit_exceeded")
        assert response.headers["x-ratelimit-limit-requests"] == "4"
    assert router.completions() == 4


def test_a_third_concurrent_request_over_the_plan_is_refused(simulators, gateway):
    (router,) = simulators(1, latency_ms=1500)
    server = gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant(on_plan=seeding.plan("two-at-a-time", concurrent_requests=2))
    warm((server,), tenant.secret)

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [pool.submit(chat, server, tenant.secret) for _ in range(2)]
        assert eventually(lambda: router.stats()["in_flight"] == 2, timeout=5)
        third = chat(server, tenant.secret)
        started = time.monotonic()
        first_two = [f.result() for f in slow]

    assert third.status_code == 429
    error = assert_stable_error(third.json(), code="rate_limit_exceeded")
    assert "concurrent" in error["message"]
    assert time.monotonic() - started > 0.1, (
        "the third was refused while the two were still running"
    )
    assert [r.status_code for r in first_two] == [200, 200]
    assert chat(server, tenant.secret).status_code == 200  # their slots were released
