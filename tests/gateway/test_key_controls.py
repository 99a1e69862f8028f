"""A key's controls in process: the budget counter holds what was billed, keys without a
budget are never priced, and the IP allowlist as admit.lua matches it (IPv4 and IPv6,
prefixes that split a hex digit)."""

from __future__ import annotations

import ipaddress
import json
import random
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from apikeys.networks import address_allowed
from apikeys.services import api_key_update
from gateway import budget
from infra import faststate
from metering.budgets import budget_key
from metering.models import UsageEvent
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db


def chat(secret: str, *, remote: str = "127.0.0.1", **body):
    return Client(REMOTE_ADDR=remote).post(
        "/v1/chat/completions",
        data=json.dumps(
            {"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def control(tenant, **controls) -> None:
    api_key_update(key=tenant.key, actor=None, now=timezone.now(), controls=controls)


def test_the_budget_counter_holds_the_cost_billed(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    control(tenant, budget={"amount": 10_000, "period": "month"})

    for _ in range(3):
        assert chat(tenant.secret, max_tokens=16).status_code == 200

    (name,) = faststate.get_client().keys("*budget*")
    billed = sum(UsageEvent.objects.values_list("cost", flat=True))
    assert int(faststate.get_client().get(name)) == billed > 0
    start_ms = int(name.decode().rsplit(":", 1)[1])
    assert name.decode() == budget_key(key_id=tenant.key.pk, period_start_ms=start_ms)


def test_a_key_without_a_budget_is_never_priced(router_url, on_commit):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    with mock.patch.object(budget, "prompt_bound", wraps=budget.prompt_bound) as priced:
        assert chat(tenant.secret).status_code == 200
        assert priced.call_count == 0
        with on_commit():  # the key's cached context is dropped after commit
            control(tenant, budget={"amount": 10_000, "period": "day"})
        assert chat(tenant.secret).status_code == 200  # told by admission: cost_miss
        assert priced.call_count == 1
    assert faststate.get_client().keys("*budget*") != []


def test_a_spent_budget_answers_budget_exceeded_that_the_sdks_do_not_retry(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    control(tenant, budget={"amount": 1, "period": "billing_period"})

    response = chat(tenant.secret, max_tokens=16)

    assert_stable_error(response, status=429, code="budget_exceeded", type_="insufficient_quota")
    assert response["x-should-retry"] == "false"
    assert not UsageEvent.objects.exists()


def test_a_rotated_key_starts_its_budget_from_what_the_keys_it_replaced_spent(router_url):
    """The counter admission seeds for the new secret counts the old secret's usage: a
    rotation does not give a spent budget back."""
    from apikeys.services import api_key_rotate

    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    control(tenant, budget={"amount": 10_000, "period": "billing_period"})
    UsageEvent.objects.create(
        request_id="req_before_rotation",
        org=tenant.org,
        api_key=tenant.key,
        model_name=seeding.MODEL,
        prompt_tokens=1,
        completion_tokens=1,
        cost=10_000,
        created_at=timezone.now(),
    )
    issued = api_key_rotate(key=tenant.key, actor=None, now=timezone.now())

    response = chat(issued.plaintext, max_tokens=16)

    assert_stable_error(response, status=429, code="budget_exceeded", type_="insufficient_quota")


@pytest.mark.parametrize(
    ("networks", "remote", "allowed"),
    [
        (["203.0.113.0/25"], "203.0.113.7", True),
        (["203.0.113.0/25"], "203.0.113.200", False),  # a prefix that splits a hex digit
        (["2001:db8::/33"], "2001:db8:7fff::1", True),
        (["2001:db8::/33"], "2001:db8:8000::1", False),
        (["2001:db8::/32", "198.51.100.0/24"], "198.51.100.9", True),
        (["198.51.100.9"], "::ffff:198.51.100.9", True),  # IPv4-mapped IPv6 is the IPv4 address
        (["10.0.0.0/8"], "2001:db8::1", False),
    ],
)
def test_the_allowlist_as_admission_matches_it(router_url, networks, remote, allowed):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    control(tenant, allowed_ips=networks)

    response = chat(tenant.secret, remote=remote)

    if allowed:
        assert response.status_code == 200, response.content
    else:
        assert_stable_error(response, status=403, code="ip_not_allowed", type_="permission_error")
    assert address_allowed(remote, networks) is allowed


def test_the_python_rule_agrees_with_ipaddress():
    rng = random.Random(7)
    for _ in range(2000):
        v6 = rng.random() < 0.5
        bits = 128 if v6 else 32
        address = (ipaddress.IPv6Address if v6 else ipaddress.IPv4Address)(rng.getrandbits(bits))
        prefix = rng.randint(0, bits)
        base = (ipaddress.IPv6Address if v6 else ipaddress.IPv4Address)(
            int(address) ^ (rng.getrandbits(bits) if rng.random() < 0.5 else 0)
        )
        network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
        assert address_allowed(str(address), [str(network)]) is (address in network)


def test_the_allowlist_holds_for_model_listings_and_token_counts(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    control(tenant, allowed_ips=["198.51.100.0/24"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.secret}"}
    count = {
        "path": "/v1/messages/count_tokens",
        "data": json.dumps(
            {"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}]}
        ),
        "content_type": "application/json",
    }

    inside, outside = Client(REMOTE_ADDR="198.51.100.4"), Client(REMOTE_ADDR="192.0.2.4")

    assert inside.get("/v1/models", **auth).status_code == 200
    assert inside.post(**count, **auth).status_code == 200
    assert_stable_error(
        outside.get("/v1/models", **auth),
        status=403,
        code="ip_not_allowed",
        type_="permission_error",
    )
    refused = outside.post(**count, **auth)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"  # Anthropic's shape
