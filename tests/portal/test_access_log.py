"""Gunicorn's access log (portal/accesslog.py, wired in portal/gunicorn.py) masks secrets
the way the JSON logs do: a key in a query string never reaches it in plaintext."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

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


def test_a_custom_format_keeps_its_header_and_environ_atoms_redacted(capsys):
    """Only the atoms the format names are built (portal/accesslog.py), and those keep their
    values and their redaction: a credential header is replaced whole, a secret in any other
    header, the request line or an environ entry is masked."""
    import datetime

    from gunicorn.config import Config

    from portal.accesslog import RedactingLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set(
        "access_log_format",
        '"%(r)s" %(s)s %(b)s %({X-Api-Key}i)s %({user-agent}i)s %({raw_uri}e)s '
        "%({content-type}o)s %({missing}i)s %({wsgi.url_scheme}e)s",
    )
    logger = RedactingLogger(cfg)
    secret = "ctr_live_" + secrets.token_hex(8)

    class Response:
        status = "200 OK"
        sent = 12
        headers = [("Content-Type", "application/json")]

    class Request:
        headers = [("X-API-KEY", secret), ("USER-AGENT", "agent token=abc")]

    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/v1/models?api_key={secret}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/v1/models",
        "QUERY_STRING": f"api_key={secret}",
        "wsgi.url_scheme": "http",
    }
    logger.access(Response(), Request(), environ, datetime.timedelta(microseconds=1500))

    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (
        '"GET /v1/models?api_key=*** HTTP/1.1" 200 12 *** agent token=*** '
        "/v1/models?api_key=*** application/json - http"
    )


def test_the_direct_write_gives_the_line_logging_gives(tmp_path, monkeypatch):
    """With gunicorn's plain access log (a file or stdout) the line is written straight to
    the handler's stream; with anything else on the logger (here a filter) it goes through
    `logging`. Both give the same line: quotes escaped, secrets masked, "-" for a header the
    request lacks."""
    import datetime
    import logging

    from gunicorn.config import Config

    from portal.accesslog import RedactingLogger

    path = tmp_path / "access.log"
    cfg = Config()
    cfg.set("accesslog", str(path))
    cfg.set("access_log_format", '"%(r)s" %(s)s "%(a)s" %({X-Forwarded-For}i)s %(b)s')
    logger = RedactingLogger(cfg)
    # gunicorn's own handler alone, as in a worker (pytest may have added its capture's)
    ours = [handler for handler in logger.access_log.handlers if getattr(handler, "_gunicorn", 0)]
    monkeypatch.setattr(logger.access_log, "handlers", ours)
    secret = "ctr_live_" + secrets.token_hex(8)

    class Response:
        status = "200 OK"
        sent = 7
        headers = ()

    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "POST",
        "RAW_URI": f"/v1/chat/completions?key={secret}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'an "agent"',
    }
    records: list[logging.LogRecord] = []
    make_record = logger.access_log.makeRecord

    def counted(*args, **kwargs):
        records.append(make_record(*args, **kwargs))
        return records[-1]

    logger.access_log.makeRecord = counted
    logger.access(Response(), (), environ, datetime.timedelta(microseconds=10))
    assert records == []  # written directly
    logger.access_log.addFilter(lambda record: True)
    logger.access(Response(), (), environ, datetime.timedelta(microseconds=10))
    assert len(records) == 1  # through logging
    direct, logged = path.read_text().splitlines()
    assert (
        direct == logged == '"POST /v1/chat/completions?key=*** HTTP/1.1" 200 "an \\"agent\\"" - 7'
    )


@given(st.text(alphabet="abcdeiklnoprstuvwyABKPT_=:/?&;@ \"'0123456789", max_size=60))
def test_the_quick_check_of_redact_never_skips_a_secret(text):
    """`redact` returns text without any of its patterns' literals at once: that shortcut
    must give what running every pattern gives."""
    from portal import logs

    full = text
    for pattern, replacement in logs._REDACTIONS:
        full = pattern.sub(replacement, full)
    assert logs.redact(text) == full
    assert logs.redact("Bearer ctr_live_abcd1234 and ?key=x") == "Bearer *** and ?key=***"
