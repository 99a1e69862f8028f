"""With DEBUG off a process refuses to start with the checks off (GATEWAY_ENFORCEMENT=false,
unless the benchmark's GATEWAY_ENFORCEMENT_OFF_ALLOWED) or with Clerk and no
CLERK_AUTHORIZED_PARTIES, and /metrics needs its token unless METRICS_PUBLIC opens it.
Each case starts Django in a fresh process with a production-like environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "PATH": "/usr/bin:/bin",
    "PORTAL_ENV_FILE": "/nonexistent",
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "DEBUG": "false",
    "SECRET_KEY": "guard-test-secret-key-0123456789-0123456789-0123456789",
    "API_KEY_PEPPER": "guard-test-pepper",
    "AUTH_PROVIDER": "supabase",
    "SUPABASE_URL": "http://127.0.0.1:9",
    "GATEWAY_UPKEEP": "false",
}
CLERK = {"AUTH_PROVIDER": "clerk", "CLERK_ISSUER": "https://clerk.example.com"}

START = "import django; django.setup(); print('started')"
SCRAPE = (
    "import django; django.setup(); from django.test import Client; "
    "print(Client().get('/metrics', HTTP_AUTHORIZATION=%r).status_code)"
)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**PRODUCTION, **env},
    )


def refused(done: subprocess.CompletedProcess, setting: str) -> bool:
    return (
        done.returncode != 0
        and "ImproperlyConfigured" in done.stderr
        and setting in done.stderr.splitlines()[-1]
    )


def test_the_production_environment_starts():
    done = run(START)
    assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr[-2000:]


def test_enforcement_off_refuses_to_start_with_debug_off():
    assert refused(run(START, GATEWAY_ENFORCEMENT="false"), "GATEWAY_ENFORCEMENT")
    # The benchmark's explicit escape hatch, and development, start.
    assert run(START, GATEWAY_ENFORCEMENT="false", GATEWAY_ENFORCEMENT_OFF_ALLOWED="true").stdout
    assert run(START, GATEWAY_ENFORCEMENT="false", DEBUG="true", AUTH_PROVIDER="dev").stdout


def test_clerk_without_authorized_parties_refuses_to_start_with_debug_off():
    assert refused(run(START, **CLERK), "CLERK_AUTHORIZED_PARTIES")
    started = run(START, **CLERK, CLERK_AUTHORIZED_PARTIES="https://app.example.com")
    assert started.stdout.strip() == "started", started.stderr[-2000:]


@pytest.mark.parametrize(
    ("env", "authorization", "status"),
    [
        ({}, "", "401"),  # no token, DEBUG off: closed
        ({"METRICS_BEARER_TOKEN": "scrape"}, "", "401"),
        ({"METRICS_BEARER_TOKEN": "scrape"}, "Bearer scrape", "200"),
        ({"METRICS_PUBLIC": "true"}, "", "200"),  # opened explicitly
    ],
)
def test_metrics_needs_its_token_with_debug_off_unless_opened(env, authorization, status):
    done = run(SCRAPE % authorization, **env)
    assert done.stdout.strip().splitlines()[-1:] == [status], done.stderr[-2000:]
