"""Gunicorn's access log (portal/accesslog.py, wired in portal/gunicorn.py) masks secrets
the way the JSON logs do: a key in a query string never reaches it in plaintext."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_access_log_has_no_secret_from_a_query_string(gateway, tmp_path):
    server = gateway(
        # The production config (its access log and logger class); bind and workers stay
        # the test's, from the command line.
        GUNICORN_CMD_ARGS=f"--config {ROOT / 'portal' / 'gunicorn.py'}",
        WEB_ACCESS_LOG="-",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    secret = "ctr_live_" + secrets.token_hex(16)
    token = "tok" + secrets.token_hex(8)
    for query in (f"api_key={secret}&limit=5", f"limit=5&access_token={token}&key={secret}"):
        response = requests.get(
            f"{server.url}/v1/models?{query}",
            headers={
                "Authorization": f"Bearer {secret}",
                "Referer": f"https://x.test/?key={token}",
            },
            timeout=30,
        )
        assert response.status_code == 401
    deadline = time.monotonic() + 10
    while "access_token=" not in server.process.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.process.log()
    assert '"GET /v1/models?api_key=*** HTTP/1.1" 401' in log, log[-2000:]
    assert '"GET /v1/models?limit=5&access_token=***&key=*** HTTP/1.1" 401' in log, log[-2000:]
    assert '"https://x.test/?key=***"' in log
    assert secret not in log and secret[9:] not in log
    assert token not in log
