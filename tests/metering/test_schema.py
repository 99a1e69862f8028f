"""The metering endpoints are in the OpenAPI schema, documented as the shapes they return."""

from __future__ import annotations

import pytest

from metering.adjustments import adjustment_post
from tests.factories.metering import MONDAY, record
from tests.support.schema import documented_fields, resolve, response_schema

PATHS = [
    "/api/v1/orgs/{org_id}/usage",
    "/api/v1/orgs/{org_id}/requests",
    "/api/v1/orgs/{org_id}/ledger",
    "/api/v1/orgs/{org_id}/billing-periods",
    "/api/v1/orgs/{org_id}/usage.csv",
    "/api/v1/orgs/{org_id}/requests.csv",
    "/portal/usage-summary",
]


@pytest.mark.parametrize("path", PATHS)
def test_metering_paths_are_documented(schema, path):
    assert "get" in schema["paths"][path]


def test_usage_is_documented_with_the_fields_it_returns(schema, api, alice, alice_org):
    live = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/usage").json()

    assert documented_fields(schema, "/api/v1/orgs/{org_id}/usage", "get", 200) == set(live)
    params = {
        p["name"] for p in schema["paths"]["/api/v1/orgs/{org_id}/usage"]["get"]["parameters"]
    }
    assert {"start", "end", "group_by"} <= params


def test_requests_are_documented_as_a_cursor_page(schema, api, alice, alice_org):
    record(alice_org, at=MONDAY)
    live = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/requests").json()

    page = response_schema(schema, "/api/v1/orgs/{org_id}/requests", "get", 200)
    assert set(page["properties"]) == set(live) == {"next", "previous", "results"}
    assert set(resolve(schema, page["properties"]["results"]["items"])["properties"]) == set(
        live["results"][0]
    )
    params = {
        p["name"] for p in schema["paths"]["/api/v1/orgs/{org_id}/requests"]["get"]["parameters"]
    }
    assert {"cursor", "limit", "key_id", "model", "status", "start", "end"} <= params


def test_usage_summary_is_documented_with_the_fields_it_returns(schema, api, alice):
    live = api.as_user(alice).get("/portal/usage-summary").json()

    assert documented_fields(schema, "/portal/usage-summary", "get", 200) == set(live)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/orgs/{org_id}/usage.csv", {"start", "end", "group_by"}),
        ("/api/v1/orgs/{org_id}/requests.csv", {"key_id", "model", "status", "start", "end"}),
    ],
)
def test_csv_exports_are_documented_as_csv_with_their_filters(schema, path, params):
    operation = schema["paths"][path]["get"]

    assert list(operation["responses"]["200"]["content"]) == ["text/csv"]
    assert {p["name"] for p in operation["parameters"]} >= params
    assert "cost_micro_usd" in operation["description"] or "request_id" in operation["description"]
    if path.endswith("usage.csv"):
        group_by = next(p for p in operation["parameters"] if p["name"] == "group_by")
        assert resolve(schema, group_by["schema"])["enum"] == ["day", "hour"]


def test_billing_periods_and_ledger_are_documented_with_credits(schema, api, alice, alice_org):
    adjustment_post(org=alice_org, kind="credit", amount=5, reason="r", actor=None, now=MONDAY)
    live = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/billing-periods").json()

    page = response_schema(schema, "/api/v1/orgs/{org_id}/billing-periods", "get", 200)
    item = resolve(schema, page["properties"]["results"]["items"])
    assert set(item["properties"]) == set(live["results"][0])
    assert {"credits", "credits_usd", "adjustments", "adjustments_usd"} <= set(item["properties"])
    ledger_params = {
        p["name"] for p in schema["paths"]["/api/v1/orgs/{org_id}/ledger"]["get"]["parameters"]
    }
    assert {"period_id", "kind"} <= ledger_params
