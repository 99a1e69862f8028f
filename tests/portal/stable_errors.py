"""Assertions on the stable error body every failure is rendered as."""

from __future__ import annotations

ERROR_FIELDS = {"message", "type", "param", "code"}


def assert_error(
    response, *, status: int, code: str, type_: str | None = None, param: object = ...
) -> dict:
    """`response` is `status` with exactly `{"error": {message, type, param, code}}`; returns the inner dict."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["content-type"].startswith("application/json"), response["content-type"]
    assert response["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if type_ is not None:
        assert error["type"] == type_, error
    if param is not ...:
        assert error["param"] == param, error
    return error
