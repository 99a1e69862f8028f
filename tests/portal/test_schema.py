"""The OpenAPI schema: generated without warnings, served publicly, and true to the responses."""

from __future__ import annotations

import pytest
import yaml
from drf_spectacular.drainage import GENERATOR_STATS

from pools.models import Model
from tests.factories.apikeys import issue_key
from tests.support.schema import documented_fields, generate_schema, resolve, response_schema

DASHBOARD_PATHS = [
    "/api/v1/me",
    "/api/v1/orgs",
    "/api/v1/orgs/{org_id}",
    "/api/v1/orgs/{org_id}/keys",
    "/api/v1/orgs/{org_id}/keys/{key_id}",
    "/api/v1/orgs/{org_id}/keys/{key_id}/rotate",
    "/api/v1/orgs/{org_id}/plan",
    "/api/v1/models",
    "/portal/api-keys",
    "/portal/api-keys/{key_id}",
]


def test_schema_generates_without_warnings(tmp_path):
    schema = generate_schema(tmp_path / "schema.yaml")

    assert schema["openapi"].startswith("3.")
    assert not GENERATOR_STATS


@pytest.mark.parametrize("path", DASHBOARD_PATHS)
def test_schema_documents_the_dashboard_paths(schema, path):
    assert path in schema["paths"]


def test_schema_declares_bearer_auth(schema):
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"bearerAuth": []} in schema["paths"]["/api/v1/orgs/{org_id}/keys"]["get"]["security"]


def test_schema_endpoint_is_public(api, db):
    response = api.get("/api/schema/")

    assert response.status_code == 200
    assert response["content-type"].startswith("application/vnd.oai.openapi")
    assert "/api/v1/orgs/{org_id}/keys" in yaml.safe_load(response.content)["paths"]
    assert response["x-request-id"].startswith("req_")


def test_schema_endpoint_serves_json_on_request(api, db):
    response = api.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    assert "/portal/api-keys" in response.json()["paths"]


def test_docs_page_renders_swagger_ui_for_the_schema(api, db):
    response = api.get("/api/docs/")

    assert response.status_code == 200
    assert response["content-type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/api/schema/" in html


# --- the documented shapes are the real shapes ---------------------------------------


def test_issued_key_is_the_only_schema_with_the_secret(schema):
    components = schema["components"]["schemas"]

    assert "key" in components["IssuedKey"]["properties"]
    assert "key" not in components["ApiKey"]["properties"]
    assert not any("key_hash" in c.get("properties", {}) for c in components.values())


@pytest.mark.parametrize(
    ("path", "live_path"),
    [
        ("/api/v1/orgs/{org_id}/keys", "/api/v1/orgs/{org}/keys"),
        ("/portal/api-keys", "/portal/api-keys"),
        ("/api/v1/orgs", "/api/v1/orgs"),
    ],
)
def test_lists_are_documented_as_the_paginated_page_they_return(
    schema, api, alice, alice_org, path, live_path
):
    issue_key(alice_org, by=alice)
    live = api.as_user(alice).get(live_path.format(org=alice_org.pk)).json()

    documented = response_schema(schema, path, "get", 200)

    assert documented.get("type") == "object", f"GET {path} is documented as {documented}"
    assert set(documented["properties"]) == set(live)
    assert set(resolve(schema, documented["properties"]["results"]["items"])["properties"]) == set(
        live["results"][0]
    )
    params = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}
    assert {"limit", "offset"} <= params


@pytest.mark.parametrize(
    ("path", "live_path"),
    [
        ("/api/v1/orgs/{org_id}/keys/{key_id}", "/api/v1/orgs/{org}/keys/{key}"),
        ("/portal/api-keys/{key_id}", "/portal/api-keys/{key}"),
    ],
)
def test_revoke_is_documented_as_the_200_with_the_key_it_returns(
    schema, api, alice, alice_org, path, live_path
):
    key = issue_key(alice_org, by=alice).key
    live = api.as_user(alice).delete(live_path.format(org=alice_org.pk, key=key.pk))

    assert live.status_code == 200
    assert documented_fields(schema, path, "delete", 200) == set(live.json())


def test_org_detail_is_documented_with_the_fields_it_returns(schema, api, alice, alice_org):
    live = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}").json()

    assert documented_fields(schema, "/api/v1/orgs/{org_id}", "get", 200) == set(live)


def test_key_create_is_documented_with_the_fields_it_returns(schema, api, alice, alice_org):
    live = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", {"name": "ci"}, format="json"
    )

    assert documented_fields(schema, "/api/v1/orgs/{org_id}/keys", "post", 201) == set(live.json())


def test_me_is_documented_with_the_fields_it_returns(schema, api, alice):
    live = api.as_user(alice).get("/api/v1/me").json()

    assert documented_fields(schema, "/api/v1/me", "get", 200) == set(live)


def test_catalog_is_documented_with_the_fields_it_returns(schema, api, alice):
    Model.objects.create(name="gemma-4-26b", display_name="Gemma 4 26B")
    live = api.as_user(alice).get("/api/v1/models").json()

    documented = response_schema(schema, "/api/v1/models", "get", 200)
    assert set(documented["properties"]) == set(live)
    model = resolve(schema, documented["properties"]["data"]["items"])
    assert set(model["properties"]) == set(live["data"][0])
    pricing = resolve(schema, model["properties"]["pricing"]["allOf"][0])
    assert set(pricing["properties"]) == set(live["data"][0]["pricing"])
