"""What browsers need: CORS for the web app's origin and for SDKs in a page, static files,
HTTPS settings from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

APP = "https://app.example.com"
PREFLIGHT_HEADERS = "authorization, content-type, x-stainless-os, x-stainless-retry-count"


@pytest.fixture
def cors(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    settings.CORS_ALLOW_ALL_ORIGINS = False
    return settings


def preflight(client, path: str, origin: str = APP, method: str = "POST"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=PREFLIGHT_HEADERS,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/api/v1/orgs", "/portal/api-keys"]
)
def test_a_preflight_from_an_allowed_origin_is_answered_without_the_database(
    client, cors, path, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = preflight(client, path)
    assert response.status_code == 200
    assert response["access-control-allow-origin"] == APP
    assert "POST" in response["access-control-allow-methods"]
    allowed = {h.strip() for h in response["access-control-allow-headers"].split(",")}
    # `*` covers the SDKs' x-stainless-* headers; authorization must be named (the wildcard never covers it).
    assert {"authorization", "content-type", "x-api-key", "anthropic-version", "*"} <= allowed
    assert "access-control-allow-credentials" not in response  # bearer keys, never cookies
    assert int(response["access-control-max-age"]) > 0
    assert response["x-request-id"].startswith("req_")


@pytest.mark.django_db
def test_a_preflight_from_another_origin_gets_no_cors_grant(
    client, cors, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = preflight(client, "/v1/chat/completions", origin="https://evil.example.com")
    assert "access-control-allow-origin" not in response
    assert "access-control-allow-headers" not in response


@pytest.mark.django_db
def test_answers_to_an_allowed_origin_expose_the_headers_clients_read(client, cors):
    response = client.post(
        "/v1/chat/completions", data="{}", content_type="application/json", HTTP_ORIGIN=APP
    )
    assert response.status_code == 401  # no key: still readable by the page, with its request id
    assert response["access-control-allow-origin"] == APP
    exposed = {h.strip() for h in response["access-control-expose-headers"].split(",")}
    assert {
        "x-request-id",
        "retry-after",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
    } <= exposed


@pytest.mark.django_db
def test_the_admin_is_not_opened_to_other_origins(client, cors):
    response = preflight(client, "/admin/login/")
    assert "access-control-allow-origin" not in response


def settings_in_a_fresh_process(**env: str) -> dict:
    """The settings module as a new process reads it from `env` (no .env file, no pytest)."""
    code = (
        "import json, django; from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ("
        "'CORS_ALLOW_ALL_ORIGINS', 'CORS_ALLOWED_ORIGINS', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
        "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER', "
        "'CELERY_BEAT_SCHEDULE_FILENAME', 'STORAGES')}))"
    )
    base = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        env={
            **base,
            "PORTAL_ENV_FILE": "/nonexistent",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_deployment_settings_come_from_the_environment():
    values = settings_in_a_fresh_process(
        CORS_ALLOWED_ORIGINS="https://app.example.com,https://staging.example.com",
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
        BEHIND_TLS_PROXY="true",
        CELERY_BEAT_SCHEDULE_FILE="/tmp/portal-beat-schedule",
    )
    assert values["CORS_ALLOWED_ORIGINS"] == [
        "https://app.example.com",
        "https://staging.example.com",
    ]
    assert values["CORS_ALLOW_ALL_ORIGINS"] is False
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert (
        values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and values["SECURE_HSTS_PRELOAD"] is True
    )
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["CELERY_BEAT_SCHEDULE_FILENAME"] == "/tmp/portal-beat-schedule"
    assert "Manifest" in values["STORAGES"]["staticfiles"]["BACKEND"]


def test_defaults_are_safe_for_plain_http_and_keep_beat_state_out_of_the_source_tree():
    values = settings_in_a_fresh_process()
    assert values["CORS_ALLOWED_ORIGINS"] == [] and values["CORS_ALLOW_ALL_ORIGINS"] is False
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 0
    assert values["CELERY_BEAT_SCHEDULE_FILENAME"].endswith("/var/celerybeat-schedule")


def test_a_star_opens_cors_to_every_origin():
    values = settings_in_a_fresh_process(CORS_ALLOWED_ORIGINS="*")
    assert values["CORS_ALLOW_ALL_ORIGINS"] is True and values["CORS_ALLOWED_ORIGINS"] == []


@pytest.mark.django_db
def test_plain_http_is_redirected_but_the_probes_stay_reachable(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/healthz").status_code == 200
    secure = client.get("/healthz", secure=True)
    assert secure["strict-transport-security"].startswith("max-age=3600")
