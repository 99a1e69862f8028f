"""Inputs never 500 (issue 15): a NUL or a lone surrogate in any field of a JSON body is a
400 `invalid_request_error` naming the field, and JSON nested past MAX_DEPTH a 400, on
/v1 and on the dashboard API alike; fuzzed bodies and query strings over the dashboard
API are always answered in the stable shape, never with a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.models import UsageEvent
from portal import jsonbody
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import dead_url

pytestmark = pytest.mark.django_db

NUL = "\\u0000"  # as they arrive: JSON escapes (raw, each is invalid JSON or UTF-8)
SURROGATE = "\\ud800"
DEEP = b"[" * 100_000 + b"]" * 100_000


def raw_body(template: str, bad: str) -> bytes:
    return template.replace("BAD", bad).encode()


def post_v1(path: str, raw: bytes, secret: str):
    return Client().post(
        path, data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


@pytest.fixture
def secret():
    seeding.catalog(router_urls=[dead_url()])  # nothing may reach a router
    return seeding.tenant().secret


# --- /v1 ------------------------------------------------------------------------------------

V1_CASES = [
    ("/v1/chat/completions", '{"model": "m-BAD", "messages": []}', "model"),
    (
        "/v1/chat/completions",
        '{"model": "MODEL", "messages": [{"role": "user", "content": "hi BAD"}]}',
        "messages[0].content",
    ),
    (
        "/v1/chat/completions",
        '{"model": "MODEL", "messages": [{"role": "user", "content": [{"type": "text", "text": "BAD"}]}]}',
        "messages[0].content[0].text",
    ),
    ("/v1/completions", '{"model": "MODEL", "prompt": "BAD"}', "prompt"),
    (
        "/v1/chat/completions",
        '{"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "user": "BAD"}',
        "user",
    ),
    (
        "/v1/chat/completions",
        '{"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "metadata": {"kBAD": "v"}}',
        "metadata.k\\x00",
    ),
]


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("path, template, param", V1_CASES)
def test_nul_and_lone_surrogates_in_any_v1_field_are_400_naming_it(
    secret, path, template, param, bad
):
    raw = raw_body(template.replace("MODEL", seeding.MODEL), bad)

    response = post_v1(path, raw, secret)

    error = assert_stable_error(
        response, status=400, code="invalid_request_error", type_="invalid_request_error"
    )
    if bad == SURROGATE:
        param = param.replace("\\x00", "\\ud800")
    assert error["param"] == param, error
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_anthropic_system_and_content_with_a_lone_surrogate_are_400(secret, bad):
    for template in (
        '{"model": "MODEL", "max_tokens": 8, "system": "BAD", "messages": [{"role": "user", "content": "hi"}]}',
        '{"model": "MODEL", "max_tokens": 8, "messages": [{"role": "user", "content": "BAD"}]}',
    ):
        raw = raw_body(template.replace("MODEL", seeding.MODEL), bad)
        response = post_v1("/v1/messages", raw, secret)
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_a_bogus_key_with_a_bad_model_name_is_a_4xx_not_a_500(db, bad):
    seeding.catalog(router_urls=[dead_url()])
    raw = raw_body('{"model": "BAD", "messages": [{"role": "user", "content": "hi"}]}', bad)

    response = post_v1("/v1/chat/completions", raw, "ctr_live_" + "x" * 40)

    assert 400 <= response.status_code < 500, response.content
    assert_stable_error(response)


def test_a_surrogate_pair_is_a_character_like_any_other(secret):
    """An emoji escaped as a pair (Python's json.dumps does it) is fine: refused only
    because the router is unreachable (503), not as input."""
    raw = json.dumps(
        {"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi 🙂"}]}
    ).encode()
    assert b"\\ud83d\\ude42" in raw

    response = post_v1("/v1/chat/completions", raw, secret)

    assert response.status_code != 400, response.content


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses"])
def test_deep_json_on_v1_is_400(secret, path):
    for raw in (DEEP, b'{"model": ' + b"[" * 65 + b"]" * 65 + b"}"):
        response = post_v1(path, raw, secret)
        assert_stable_error(response, status=400, code="invalid_json")


# --- the dashboard API ----------------------------------------------------------------------


def dashboard_targets(org) -> list[tuple[str, str]]:
    """(method, path) of dashboard endpoints that take a JSON body."""
    return [
        ("post", f"/api/v1/orgs/{org.pk}/keys"),
        ("patch", "/api/v1/me"),
        ("post", "/portal/api-keys"),
    ]


@pytest.fixture
def client(api, alice):
    return api.as_user(alice)


def test_deep_json_on_the_dashboard_api_is_400(client, alice_org):
    for method, path in dashboard_targets(alice_org):
        response = getattr(client, method)(path, data=DEEP, content_type="application/json")
        assert_stable_error(response, status=400, code="invalid_json")


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_nul_and_surrogates_on_the_dashboard_api_are_400_naming_the_field(client, alice_org, bad):
    raw = raw_body('{"name": "key BAD"}', bad)
    for method, path in dashboard_targets(alice_org):
        response = getattr(client, method)(path, data=raw, content_type="application/json")
        error = assert_stable_error(response, status=400, code="invalid_request_error")
        assert error["param"] == "name", error


def test_the_checks_leave_ordinary_bodies_alone():
    body = {"a": [{"b": "x" * 10}] * 10, "emoji": "🙂", "escaped": "\\u0000 as text"}
    assert jsonbody.loads(json.dumps(body).encode()) == body
    nested = json.dumps([[[[{"k": [1]}]]]] * 40).encode()  # many brackets, shallow
    assert jsonbody.loads(nested) == json.loads(nested)


# Dashboard fuzz: whatever the body or query string, the answer is the stable shape and
# never a 500.

text_with_bad = st.text(max_size=8) | st.sampled_from(["\x00", "\ud800", "a\x00b", "\udfff"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text_with_bad,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text_with_bad, inner, max_size=3),
    max_leaves=8,
)
KEY_FIELDS = ["name", "allowed_models", "expires_at", "status", "org_id", "rate_limit_rpm"]


@st.composite
def dashboard_requests(draw):
    kind = draw(st.sampled_from(["object", "object", "value", "bytes", "deep"]))
    if kind == "deep":
        depth = draw(st.integers(min_value=65, max_value=3000))
        return b"[" * depth + b"]" * depth
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "value":
        value = draw(json_values)
    else:
        value = draw(st.dictionaries(st.sampled_from(KEY_FIELDS) | text_with_bad, json_values))
    return json.dumps(value).encode()


# Query values as they arrive, percent-encoded: NUL, a lone surrogate's bytes, junk.
query_values = st.sampled_from(
    ["%00", "a%00b", "%ED%A0%80", "%FF", "x" * 300, "-1", "2026-13-45", "%5B%5D", ""]
)


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=dashboard_requests(),
    target=st.integers(min_value=0, max_value=2),
    query=st.dictionaries(
        st.sampled_from(["start", "end", "model", "page", "cursor", "granularity", "status"]),
        query_values,
        max_size=2,
    ),
)
def test_fuzzed_dashboard_requests_are_never_a_500(client, alice_org, raw, target, query):
    method, path = dashboard_targets(alice_org)[target]
    response = getattr(client, method)(path, data=raw, content_type="application/json")
    assert response.status_code < 500, (path, raw, response.content)
    if response.status_code >= 400:
        assert_stable_error(response)
    for get_path in (
        f"/api/v1/orgs/{alice_org.pk}/usage",
        f"/api/v1/orgs/{alice_org.pk}/requests",
        f"/api/v1/orgs/{alice_org.pk}/keys",
        "/portal/usage-summary",
    ):
        query_string = "&".join(f"{name}={value}" for name, value in query.items())
        response = client.get(f"{get_path}?{query_string}")
        assert response.status_code < 500, (get_path, query, response.content)
        if response.status_code >= 400:
            assert_stable_error(response)
