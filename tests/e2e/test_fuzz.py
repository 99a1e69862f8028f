"""Fuzzed bad bodies: every one is a 4xx in the stable error shape and is never billed.

Runs in process (Django's test client) and so on any database: bodies are refused
before anything reaches a router, and that is the point.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.models import UsageEvent
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import dead_url
from tests.support.wire import REQUEST_ID

pytestmark = pytest.mark.django_db

DELETE = object()  # a mutation that removes the field

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def anything_but(*allowed: type) -> st.SearchStrategy:
    """JSON values of none of the `allowed` types (bool is not an int here)."""
    return values.filter(lambda v: not any(type(v) is t for t in allowed))


def numbers_outside(low: float, high: float) -> st.SearchStrategy:
    return (
        st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False)
        | st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False)
        | st.integers(max_value=int(low) - 1)
        | st.integers(min_value=int(high) + 1)
    )


def bad_number(low: float, high: float) -> st.SearchStrategy:
    return numbers_outside(low, high) | anything_but(int, float, type(None))


bad_model = (
    anything_but(str, type(None))
    | st.just(DELETE)
    | st.text(alphabet=" \t\n", max_size=4)
    | st.text(min_size=257, max_size=300)
)
bad_max_tokens = (
    st.integers(max_value=0)
    | st.integers(min_value=1_000_001)
    | st.floats(allow_nan=False, allow_infinity=False)
    | anything_but(int, float, type(None))
)
bad_stream = anything_but(bool, type(None))
bad_content = (
    anything_but(str, list)
    | st.lists(scalars, max_size=3)
    | st.lists(
        st.fixed_dictionaries(
            {"type": anything_but(str) | st.sampled_from(["image", "image_url", "tool_use"])}
        ),
        min_size=1,
        max_size=2,
    )
)


def bad_messages(roles: tuple[str, ...]) -> st.SearchStrategy:
    bad_message = (
        anything_but(dict)
        | st.fixed_dictionaries(
            {"role": values.filter(lambda r: r not in roles), "content": st.just("hi")}
        )
        | st.fixed_dictionaries({"role": st.sampled_from(roles), "content": bad_content})
        | st.fixed_dictionaries({"content": st.just("no role")})
    )
    valid_message = st.just({"role": "user", "content": "hi"})
    with_a_bad_one = st.tuples(st.lists(valid_message, max_size=2), bad_message).map(
        lambda t: [*t[0], t[1]]
    )
    return anything_but(list, type(None)) | st.just([]) | st.just(DELETE) | with_a_bad_one


OPENAI_FIELDS = {
    "model": bad_model,
    "max_tokens": bad_max_tokens,
    "temperature": bad_number(0, 2),
    "top_p": bad_number(0, 1),
    "presence_penalty": bad_number(-2, 2),
    "stream": bad_stream,
    "n": st.integers().filter(lambda n: n != 1) | anything_but(int, type(None)),
    "stop": anything_but(str, list, type(None))
    | st.just("")
    | st.lists(st.text(min_size=1, max_size=3), min_size=5, max_size=6)
    | st.lists(anything_but(str), min_size=1, max_size=2),
    "stream_options": anything_but(dict, type(None))
    | st.fixed_dictionaries({"include_usage": anything_but(bool, type(None))}),
    "user": anything_but(str, type(None)),
}
ENDPOINTS = {
    "/v1/chat/completions": (
        {"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}]},
        {**OPENAI_FIELDS, "messages": bad_messages(("system", "developer", "user", "assistant"))},
    ),
    "/v1/completions": (
        {"model": seeding.MODEL, "prompt": "hi"},
        {
            **OPENAI_FIELDS,
            "prompt": anything_but(str, list, type(None))
            | st.just(DELETE)
            | st.just([])
            | st.lists(st.text(max_size=3), min_size=2, max_size=3)
            | st.lists(anything_but(str), min_size=1, max_size=3),
        },
    ),
    "/v1/messages": (
        {"model": seeding.MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": bad_model,
            "max_tokens": bad_max_tokens | st.just(DELETE) | st.none(),
            "messages": bad_messages(("user", "assistant")),
            "temperature": bad_number(0, 1),
            "stream": bad_stream,
            "system": anything_but(str, list, type(None))
            | st.lists(scalars, min_size=1, max_size=2),
            "stop_sequences": anything_but(list, type(None))
            | st.lists(anything_but(str), min_size=1, max_size=2),
            "metadata": anything_but(dict, type(None))
            | st.fixed_dictionaries({"user_id": anything_but(str, type(None))}),
        },
    ),
}


@st.composite
def bad_requests(draw) -> tuple[str, bytes]:
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    base, fields = ENDPOINTS[path]
    kind = draw(st.sampled_from(["fields", "fields", "fields", "not an object", "bytes"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
        return path, raw
    if kind == "not an object":
        return path, json.dumps(draw(anything_but(dict))).encode()
    names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
    body = dict(base)
    for name in names:
        value = draw(fields[name])
        if value is DELETE:
            body.pop(name, None)
        else:
            body[name] = value
    return path, json.dumps(body).encode()


@pytest.fixture
def secret():
    seeding.catalog(router_urls=[dead_url()])  # nothing may reach a router; if a body did, 503
    return seeding.tenant().secret


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(request=bad_requests())
def test_fuzzed_bad_bodies_are_refused_in_the_stable_shape_and_never_billed(secret, request):
    path, raw = request
    before = UsageEvent.objects.count()

    response = Client().post(
        path, data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )

    assert 400 <= response.status_code < 500, (path, raw, response.content)
    assert response["content-type"] == "application/json"
    assert re.fullmatch(REQUEST_ID, response["x-request-id"])
    body = response.json()
    if path == "/v1/messages":
        assert set(body) <= {"type", "error", "request_id"} and body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] == "invalid_request_error", body
    else:
        error = assert_stable_error(body)
        assert error["code"] in {
            "invalid_request_error",
            "invalid_json",
            "unsupported_parameter",
        }, body
        assert error["type"] == "invalid_request_error"
    assert UsageEvent.objects.count() == before == 0
