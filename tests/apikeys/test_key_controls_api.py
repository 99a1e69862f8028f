"""The keys API's controls (limits, budget, allowed_ips, spend) in process: what is
refused (400 naming the field, nothing changed), what rotation keeps, what the OpenAPI
schema documents."""

from __future__ import annotations

import pytest

from apikeys.models import ApiKey
from tests.support.errors import assert_stable_error
from tests.support.schema import documented_fields, resolve

pytestmark = pytest.mark.django_db

KEY = "/api/v1/orgs/{org_id}/keys/{key_id}"


@pytest.fixture
def client(api, alice):
    return api.as_user(alice)


def create(client, org, **body):
    return client.post(f"/api/v1/orgs/{org.pk}/keys", {"name": "k", **body}, format="json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limits": {"requests_per_minute": 0}}, "limits.requests_per_minute"),
        ({"limits": {"requests_per_minute": 11}}, "limits.requests_per_minute"),  # free: 10
        ({"limits": {"concurrent_requests": 3}}, "limits.concurrent_requests"),  # free: 2
        ({"limits": {"rpm": 5}}, "limits.rpm"),
        ({"budget": {"amount": 0}}, "budget.amount"),
        ({"budget": {"amount": 5, "period": "week"}}, "budget.period"),
        ({"budget": {"period": "day"}}, "budget.amount"),
        ({"budget": {"amount": 1.5}}, "budget.amount"),
        ({"allowed_ips": ["203.0.113.1/24"]}, "allowed_ips"),  # host bits set
        ({"allowed_ips": ["not-an-ip"]}, "allowed_ips"),
        ({"allowed_ips": ["10.0.0.0/8"] * 101}, "allowed_ips"),
        ({"budgets": {"amount": 5}}, "budgets"),
    ],
)
def test_bad_controls_are_400_naming_the_field_and_change_nothing(client, alice_org, body, param):
    response = create(client, alice_org, **body)

    error = assert_stable_error(response, status=400, code="invalid_request_error")
    assert error["param"] == param
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_controls_are_shown_and_rotation_keeps_them(client, alice_org):
    created = create(
        client,
        alice_org,
        limits={"requests_per_minute": 5, "concurrent_requests": 1},
        budget={"amount": 2_500_000},
        allowed_ips=["2001:db8::/32", "203.0.113.5"],
    ).json()
    assert created["limits"] == {
        "requests_per_minute": 5,
        "tokens_per_minute": None,
        "concurrent_requests": 1,
    }
    assert created["budget"] == {"amount": 2_500_000, "period": "billing_period"}
    assert created["allowed_ips"] == ["2001:db8::/32", "203.0.113.5/32"]

    detail = client.get(f"/api/v1/orgs/{alice_org.pk}/keys/{created['id']}").json()
    assert detail["spend"]["amount"] == 0 and detail["spend"]["remaining"] == 2_500_000
    rotated = client.post(f"/api/v1/orgs/{alice_org.pk}/keys/{created['id']}/rotate").json()
    for field in ("limits", "budget", "allowed_ips"):
        assert rotated[field] == created[field]

    # PATCH clears each with null; a key without a budget shows no spend.
    cleared = client.patch(
        f"/api/v1/orgs/{alice_org.pk}/keys/{rotated['id']}",
        {"limits": None, "budget": None, "allowed_ips": None},
        format="json",
    ).json()
    assert (cleared["limits"]["requests_per_minute"], cleared["budget"]) == (None, None)
    assert (cleared["allowed_ips"], cleared["spend"]) == (None, None)


def test_a_rotated_keys_spend_carries_over_from_the_keys_it_replaced(client, alice_org):
    """Rotation gives the key a new secret, not a fresh budget: the spend shown (and the
    budget counter admission starts from) counts the usage of every key it replaced."""
    from django.utils import timezone

    from metering.models import UsageEvent

    def spend(key_id):
        return client.get(f"/api/v1/orgs/{alice_org.pk}/keys/{key_id}").json()["spend"]

    first = create(client, alice_org, budget={"amount": 2_500_000}).json()
    for key_id, cost in ((first["id"], 700_000), (None, 5)):  # a key-less event never counts
        UsageEvent.objects.create(
            request_id=f"req_spend_{cost}",
            org=alice_org,
            api_key_id=key_id,
            model_name="x",
            prompt_tokens=1,
            completion_tokens=1,
            cost=cost,
            created_at=timezone.now(),
        )
    second = client.post(f"/api/v1/orgs/{alice_org.pk}/keys/{first['id']}/rotate").json()
    third = client.post(f"/api/v1/orgs/{alice_org.pk}/keys/{second['id']}/rotate").json()
    UsageEvent.objects.create(
        request_id="req_spend_third",
        org=alice_org,
        api_key_id=third["id"],
        model_name="x",
        prompt_tokens=1,
        completion_tokens=1,
        cost=300_000,
        created_at=timezone.now(),
    )

    assert spend(third["id"])["amount"] == 1_000_000
    assert spend(third["id"])["remaining"] == 1_500_000
    assert spend(first["id"])["amount"] == 700_000  # a key's own lineage only


def test_the_schema_documents_every_control(schema):
    fields = documented_fields(schema, KEY, "get", 200)
    assert {"limits", "budget", "allowed_ips", "spend"} <= fields
    for method in ("post", "patch"):
        path = "/api/v1/orgs/{org_id}/keys" if method == "post" else KEY
        body = resolve(
            schema,
            schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"],
        )
        assert {"limits", "budget", "allowed_ips"} <= set(body["properties"])
    budget = schema["components"]["schemas"]["KeyBudgetRequest"]["properties"]
    assert set(budget) == {"amount", "period"}
    enums = [node.get("enum") for node in schema["components"]["schemas"].values()]
    assert ["billing_period", "day", "month"] in enums
