"""Failures outside any one endpoint still answer with the stable error body and a request id."""

from __future__ import annotations

import json

import pytest

from apikeys.models import ApiKey
from tests.portal.stable_errors import assert_error


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nope", "/api/v1/orgs/x/keys/y/z/w", "/portal/nope", "/nope", "/api/v1/me/", "/api/v2/me"],
)
def test_an_unknown_url_is_404_json(api, alice, path):
    response = api.as_user(alice).get(path)

    error = assert_error(response, status=404, code="not_found", type_="invalid_request_error", param=None)
    assert path in error["message"]


def test_an_unknown_url_is_404_before_authentication(api, db):
    response = api.post("/api/v1/nope", {"a": 1}, format="json")

    assert_error(response, status=404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/me"),
        ("delete", "/api/v1/me"),
        ("post", "/api/v1/orgs"),
        ("delete", "/api/v1/orgs/{org}"),
        ("put", "/api/v1/orgs/{org}/keys"),
        ("delete", "/api/v1/orgs/{org}/keys"),
        ("post", "/api/v1/orgs/{org}/plan"),
        ("get", "/api/v1/orgs/{org}/keys/{key}/rotate"),
        ("post", "/api/v1/models"),
        ("get", "/portal/api-keys/{key}"),
    ],
)
def test_a_wrong_method_is_405_json(api, alice, alice_org, method, path):
    key_id = "00000000-0000-4000-8000-000000000001"

    response = getattr(api.as_user(alice), method)(path.format(org=alice_org.pk, key=key_id))

    error = assert_error(response, status=405, code="method_not_allowed", type_="invalid_request_error")
    assert method.upper() in error["message"]
    assert method.upper() not in response["allow"]


def test_a_body_over_the_size_limit_is_413(api, alice, alice_org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"name": "big", "padding": "x" * 2_000})

    response = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", data=body, content_type="application/json"
    )

    assert_error(response, status=413, code="request_too_large", type_="invalid_request_error")
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_a_body_within_the_size_limit_is_accepted(api, alice, alice_org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"name": "small", "padding": "x" * 500})

    response = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", data=body, content_type="application/json"
    )

    assert response.status_code == 201
