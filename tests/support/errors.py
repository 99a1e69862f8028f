"""The one place tests check error bodies: the stable body every failure is rendered as, and
Anthropic's (`/v1/messages` and its `count_tokens`), which has its own shape."""

from __future__ import annotations

ERROR_FIELDS = frozenset({"message", "type", "param", "code"})


def assert_stable_error(
    found,
    *,
    code: str | None = None,
    status: int | None = None,
    type_: str | None = None,
    param: object = ...,
) -> dict:
    """`found` is exactly `{"error": {message, type, param, code}}`; returns the inner dict.

    `found` is a response (Django's test client, `requests` or `httpx`) or its parsed JSON
    body. A response must also be JSON and carry an `x-request-id`; `status` is checked
    when given. `code` and `type_` are checked when given; `param` when given, None included.
    """
    if isinstance(found, dict):
        body = found
    else:
        if status is not None:
            assert found.status_code == status, (found.status_code, found.content)
        content_type = found.headers["content-type"]
        assert content_type.startswith("application/json"), content_type
        assert found.headers["x-request-id"].startswith("req_"), found.headers
        body = found.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if code is not None:
        assert error["code"] == code, error
    if type_ is not None:
        assert error["type"] == type_, error
    if param is not ...:
        assert error["param"] == param, error
    return error


def assert_anthropic_error(response, status: int, type_: str) -> str:
    """`response` is `status` with Anthropic's `{"type": "error", "error": {type, message}}`;
    returns the message."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == type_, body
    assert response.headers["x-request-id"].startswith("req_"), response.headers
    return body["error"]["message"]
