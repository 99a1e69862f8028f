"""A key's own controls set through the dashboard API (a dev-signed token, as the web app
sends), observed by the official `openai` SDK against live gateway processes: per-key
limits under a looser plan, a budget under 50 concurrent requests, an IP allowlist with
and without trusted proxies; and staff's per-organization overrides and allowance reset."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from django.db.models import Sum

from accounts.models import AuditEvent
from accounts.signing import mint_dev_token
from metering.models import UsageEvent
from tests.factories import seeding
from tests.support import live
from tests.support.errors import assert_stable_error

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "hello"}]


def dashboard(stack, method: str, path: str, body: dict | None = None) -> requests.Response:
    token = mint_dev_token(subject=f"dev|{stack.tenant.user.email}")
    return requests.request(
        method,
        f"{stack.server.url}/api/v1/orgs/{stack.tenant.org.pk}{path}",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=30,
    )


def new_key(stack, **controls) -> dict:
    response = dashboard(stack, "POST", "/keys", {"name": "controlled", **controls})
    assert response.status_code == 201, response.text
    return response.json()


def sdk(server, key: str, **options) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20, **options
    )


def ask(client: openai.OpenAI, **kwargs):
    return client.chat.completions.with_raw_response.create(
        model=live.MODEL, messages=HELLO, max_tokens=16, **kwargs
    )


def test_a_key_limited_to_2_requests_a_minute_is_refused_on_the_third(simulators, gateway):
    stack = live.start(simulators, gateway, plan=seeding.plan("rpm600", requests_per_minute=600))
    created = new_key(stack, limits={"requests_per_minute": 2})
    assert created["limits"] == {
        "requests_per_minute": 2,
        "tokens_per_minute": None,
        "concurrent_requests": None,
    }
    limited = sdk(stack.server, created["key"])

    seen = [ask(limited).headers for _ in range(2)]
    assert [
        (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) for h in seen
    ] == [
        ("2", "1"),
        ("2", "0"),
    ]
    with pytest.raises(openai.RateLimitError) as refused:
        ask(limited)
    err = refused.value
    assert (err.status_code, err.code) == (429, "rate_limit_exceeded")
    assert "this API key's limit" in err.message
    assert err.response.headers["x-ratelimit-scope"] == "key"
    assert err.response.headers["x-ratelimit-limit-requests"] == "2"

    # Another key of the organization is not refused: the org has used 2 of its 600.
    other = ask(sdk(stack.server, stack.tenant.secret)).headers
    assert other["x-ratelimit-limit-requests"] == "600"
    assert other["x-ratelimit-remaining-requests"] == "597"

    # Above the organization's limit: refused, and nothing changes.
    above = dashboard(
        stack, "PATCH", f"/keys/{created['id']}", {"limits": {"requests_per_minute": 601}}
    )
    assert_stable_error(above, status=400, code="invalid_request_error")
    assert above.json()["error"]["param"] == "limits.requests_per_minute"
    misspelt = dashboard(stack, "PATCH", f"/keys/{created['id']}", {"limit": {"rpm": 5}})
    assert_stable_error(misspelt, status=400, code="invalid_request_error")
    with pytest.raises(openai.RateLimitError):
        ask(limited)

    # Cleared (null: the organization's): served on the next request.
    cleared = dashboard(stack, "PATCH", f"/keys/{created['id']}", {"limits": None})
    assert cleared.status_code == 200, cleared.text
    assert ask(limited).headers["x-ratelimit-limit-requests"] == "600"

    audits = AuditEvent.objects.filter(target_id=created["id"]).order_by("id")
    assert [(a.action, a.after["requests_per_minute"]) for a in audits] == [
        ("api_key.create", 2),
        ("api_key.update", None),
    ]


def test_a_budget_is_never_exceeded_by_50_concurrent_requests(simulators, gateway):
    stack = live.start(simulators, gateway, latency_ms=150, completion_tokens=16)
    budget = 100  # micro-USD: a handful of 16-token answers at the test catalog's prices
    created = new_key(stack, budget={"amount": budget, "period": "day"})
    assert created["budget"] == {"amount": budget, "period": "day"}
    client = sdk(stack.server, created["key"])

    def one(_):
        try:
            return ask(client).status_code, None
        except openai.APIStatusError as err:
            return err.status_code, err

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))

    served = [status for status, _ in results if status == 200]
    refusals = [err for _, err in results if err is not None]
    assert served and refusals, sorted({(e.status_code, e.code) for e in refusals})
    for err in refusals:
        assert (err.status_code, err.code) == (429, "budget_exceeded")
        assert err.response.headers["x-should-retry"] == "false"
    spent = UsageEvent.objects.filter(api_key_id=created["id"]).aggregate(c=Sum("cost"))["c"]
    assert UsageEvent.objects.filter(api_key_id=created["id"]).count() == len(served)
    assert 0 < spent <= budget

    detail = dashboard(stack, "GET", f"/keys/{created['id']}").json()
    assert detail["spend"]["amount"] == spent
    assert detail["spend"]["remaining"] == budget - spent
    # Raised, the key is served again on its next request.
    raised = dashboard(
        stack, "PATCH", f"/keys/{created['id']}", {"budget": {"amount": 10_000, "period": "day"}}
    )
    assert raised.status_code == 200, raised.text
    assert ask(client).status_code == 200


def test_an_ip_allowlist_refuses_other_addresses(simulators, gateway):
    stack = live.start(simulators, gateway)
    created = new_key(stack, allowed_ips=["203.0.113.0/24", "2001:db8::/32"])
    assert created["allowed_ips"] == ["203.0.113.0/24", "2001:db8::/32"]
    client = sdk(stack.server, created["key"])

    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(client)
    assert (refused.value.status_code, refused.value.code) == (403, "ip_not_allowed")
    with pytest.raises(openai.PermissionDeniedError):
        client.models.list()
    # A forwarded-for header is the client's own claim without a trusted proxy.
    with pytest.raises(openai.PermissionDeniedError):
        ask(client, extra_headers={"X-Forwarded-For": "203.0.113.9"})
    assert not UsageEvent.objects.filter(api_key_id=created["id"]).exists()

    bad = dashboard(stack, "PATCH", f"/keys/{created['id']}", {"allowed_ips": ["10.0.0.1/8"]})
    assert_stable_error(bad, status=400, code="invalid_request_error")
    assert bad.json()["error"]["param"] == "allowed_ips"

    widened = dashboard(
        stack, "PATCH", f"/keys/{created['id']}", {"allowed_ips": ["203.0.113.0/24", "127.0.0.1"]}
    )
    assert widened.json()["allowed_ips"] == ["203.0.113.0/24", "127.0.0.1/32"]
    assert ask(client).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_counts(simulators, gateway):
    stack = live.start(simulators, gateway, server_env={"TRUSTED_PROXY_COUNT": "1"})
    created = new_key(stack, allowed_ips=["203.0.113.0/24"])
    client = sdk(stack.server, created["key"])

    # The proxy appended the address it saw: inside the list.
    assert ask(client, extra_headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    # The client's own claim is left of what the proxy appended: the proxy's entry counts.
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(client, extra_headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert refused.value.code == "ip_not_allowed"


def test_staff_overrides_and_allowance_reset_take_effect_on_the_next_request(
    simulators, gateway, staff_client
):
    stack = live.start(
        simulators,
        gateway,
        plan=seeding.plan("tight", requests_per_minute=2, weekly_requests=4),
    )
    second = dataclasses.replace(stack, server=gateway())
    assert [stack.code() for _ in range(2)] == [(200, "")] * 2
    assert second.code() == (429, "rate_limit_exceeded")

    org = stack.tenant.org
    staff_client.action(
        "accounts.organization",
        "override_limits",
        [org],
        reason="launch week",
        requests_per_minute=5,
    )
    assert [second.code() for _ in range(2)] == [(200, "")] * 2
    assert stack.code() == (429, "insufficient_quota")  # 4 of the week's 4 used

    staff_client.action("accounts.organization", "reset_allowance", [org], reason="goodwill")
    assert second.code() == (200, "")
    assert list(
        AuditEvent.objects.filter(target_id=str(stack.tenant.org.pk), actor_type="staff")
        .order_by("id")
        .values_list("action", "reason")
    ) == [("org.limits_override", "launch week"), ("org.allowance_reset", "goodwill")]
    override = AuditEvent.objects.get(action="org.limits_override")
    assert (override.before["requests_per_minute_override"], override.after) == (
        None,
        {
            "requests_per_minute_override": 5,
            "tokens_per_minute_override": None,
            "weekly_requests_override": None,
            "weekly_tokens_override": None,
        },
    )
    allowance = dashboard(stack, "GET", "/plan").json()
    assert allowance["limits"]["requests_per_minute"] == 5
    assert allowance["allowance"]["requests"]["used"] == 1
