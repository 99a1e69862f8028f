"""/v1 requests skip the browser app's middleware (portal/middleware_v1.py, issue 17) and
still carry what every answer carries: a request id, the security headers, X-Frame-Options
and a Content-Length; other paths keep the whole chain."""

from __future__ import annotations

import pytest
from django.contrib.sessions.middleware import SessionMiddleware

pytestmark = pytest.mark.django_db


@pytest.fixture
def sessions_refused(monkeypatch):
    """Any request that reaches the session middleware fails loudly."""

    def refuse(self, request):
        raise AssertionError(f"session middleware ran for {request.path}")

    monkeypatch.setattr(SessionMiddleware, "process_request", refuse)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/v1/models", 401),
        ("post", "/v1/chat/completions", 401),
        ("get", "/v1/chat/completions", 405),
        ("get", "/v1/messages", 405),
        ("get", "/v1/no-such-thing", 404),
    ],
)
def test_a_v1_answer_skips_the_browser_layers_and_keeps_its_headers(
    client, sessions_refused, method, path, status
):
    response = getattr(client, method)(path)

    assert response.status_code == status
    assert response["x-request-id"].startswith("req_")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert int(response["Content-Length"]) == len(response.content)
    assert response.json()["error"]
    if status == 405:
        assert "POST" in response["Allow"] and method.upper() not in response["Allow"]
    assert "Cookie" not in response.get("Vary", "")


def test_other_paths_keep_the_whole_chain(client, sessions_refused):
    with pytest.raises(AssertionError, match="session middleware ran for /api/v1/me"):
        client.get("/api/v1/me")
