"""The metering endpoints are in the OpenAPI schema, documented as the shapes they return."""

from __future__ import annotations

import pytest

from tests.factories.metering import MONDAY, record
from tests.support.schema import documented_fields, resolve, response_schema

PATHS = [
    "/api/v1/orgs/{org_id}/usage",
    "/api/v1/orgs/{org_id}/requests",
    "/api/v1/orgs/{org_id}/ledger",
    "/api/v1/orgs/{org_id}/billing-periods",
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
