"""Failures outside any one endpoint still answer with the stable error body and a request id."""

from __future__ import annotations

import json

import pytest

from apikeys.models import ApiKey
from tests.support.errors import assert_stable_error


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/v1/orgs/x/keys/y/z/w",
        "/portal/nope",
        "/nope",
        "/api/v1/me/",
        "/api/v2/me",
    ],
)
def test_an_unknown_url_is_404_json(api, alice, path):
    response = api.as_user(alice).get(path)

    error = assert_stable_error(
        response, status=404, code="not_found", type_="invalid_request_error", param=None
    )
    assert path in error["message"]


def test_an_unknown_url_is_404_before_authentication(api, db):
    response = api.post("/api/v1/nope", {"a": 1}, format="json")

    assert_stable_error(response, status=404, code="not_found")


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

    error = assert_stable_error(
        response, status=405, code="method_not_allowed", type_="invalid_request_error"
    )
    assert method.upper() in error["message"]
    assert method.upper() not in response["allow"]


def test_a_body_over_the_size_limit_is_413(api, alice, alice_org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"name": "big", "padding": "x" * 2_000})

    response = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", data=body, content_type="application/json"
    )

    assert_stable_error(
        response, status=413, code="request_too_large", type_="invalid_request_error"
    )
    assert not ApiKey.objects.filter(org=alice_org).exists()


def test_a_body_within_the_size_limit_is_accepted(api, alice, alice_org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"name": "small", "allowed_models": ["m" * 99] * 5})  # 500+ bytes

    response = api.as_user(alice).post(
        f"/api/v1/orgs/{alice_org.pk}/keys", data=body, content_type="application/json"
    )

    assert response.status_code == 201


# --- unknown URLs and methods under the API prefixes, DEBUG on or off ------------------------
# With DEBUG on, Django answers an unresolved URL with its HTML technical 404 page; the SDKs
# would put that HTML into their exceptions. Every API prefix answers JSON instead.

DEBUG_MODES = pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])


@DEBUG_MODES
@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize(
    "path",
    [
        "/v1/foo",
        "/v1/chat/completions/",
        "/v1/files/file-1",
        "/v1/models/x/y",
        "/api/v1/nope",
        "/portal/nope",
        "/api/v2/me",
    ],
)
def test_an_unknown_api_url_is_a_json_404_naming_method_and_path(
    api, db, settings, debug, method, path
):
    settings.DEBUG = debug

    response = getattr(api, method)(path)

    error = assert_stable_error(
        response, status=404, code="not_found", type_="invalid_request_error", param=None
    )
    assert (
        error["message"] == f"Unknown request URL: {method.upper()} {path}. Please check the URL."
    )


@DEBUG_MODES
def test_an_unknown_url_under_v1_messages_answers_in_the_anthropic_shape(api, db, settings, debug):
    settings.DEBUG = debug

    response = api.post("/v1/messages/batches", {"requests": []}, format="json")

    assert response.status_code == 404
    assert response["content-type"].startswith("application/json")
    assert response["x-request-id"].startswith("req_")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "/v1/messages/batches" in body["error"]["message"]


@DEBUG_MODES
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/v1/chat/completions", "POST"),
        ("put", "/v1/chat/completions", "POST"),
        ("get", "/v1/completions", "POST"),
        ("post", "/v1/models", "GET"),
        ("delete", "/health", "GET"),
        ("put", "/api/v1/me", "GET"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_debug_on_or_off(
    api, alice, settings, debug, method, path, allowed
):
    settings.DEBUG = debug

    response = getattr(api.as_user(alice), method)(path)

    error = assert_stable_error(
        response, status=405, code="method_not_allowed", type_="invalid_request_error"
    )
    assert method.upper() in error["message"]
    assert allowed in response["allow"] and method.upper() not in response["allow"]


@DEBUG_MODES
def test_a_wrong_method_on_v1_messages_answers_in_the_anthropic_shape(api, db, settings, debug):
    settings.DEBUG = debug

    response = api.get("/v1/messages")

    assert response.status_code == 405
    assert response["x-request-id"].startswith("req_")
    assert "POST" in response["allow"]
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "GET" in body["error"]["message"]
