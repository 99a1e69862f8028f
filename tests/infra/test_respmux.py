"""The gevent worker's Redis script client (infra/respmux.py): one connection, many
greenlets. Each case runs in a fresh interpreter with gevent's patches applied first,
as in the web worker, against the real Redis of REDIS_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
from gevent import monkey; monkey.patch_all()
import json, sys, time, socket, gevent, redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from infra.respclient import Script
from infra.respmux import MuxClient
URL = sys.argv[1]
KW = redis.Redis.from_url(URL).connection_pool.connection_kwargs
def client(**changes):
    kw = dict(host=KW["host"], port=KW["port"], db=KW.get("db") or 0, password=KW.get("password"), socket_timeout=2.0)
    kw.update(changes)
    return MuxClient(**kw)
"""


@pytest.fixture
def redis_url(settings):
    if not settings.REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true: these tests need REDIS_URL", pytrace=False)
        pytest.skip("REDIS_URL is not set")
    return settings.REDIS_URL


def run(code: str, url: str, **env: str):
    """Run `code` after PRELUDE; it prints one JSON value, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_gevent_worker_s_scripts_go_through_one_shared_connection(redis_url):
    out = run(
        """
        import django; django.setup()
        from infra import faststate
        handle = faststate.script("return 41 + tonumber(ARGV[1])")
        print(json.dumps([type(handle.client).__name__, handle(args=[1])]))
        """,
        redis_url,
        DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_ENV_FILE="/nonexistent",
        DEBUG="true",
        REDIS_URL=redis_url,
    )
    assert out == ["MuxClient", 42]


def test_each_of_many_concurrent_callers_gets_its_own_reply(redis_url):
    out = run(
        """
        c = client()
        echo = Script(c, "redis.call('INCR', KEYS[1]); return ARGV[1]")
        key = "respmux-test-count"
        c.execute("DEL", key)
        jobs = [gevent.spawn(echo, keys=[key], args=[f"caller-{i}"]) for i in range(300)]
        gevent.joinall(jobs, raise_error=True)
        mismatched = [i for i, job in enumerate(jobs) if job.value != f"caller-{i}".encode()]
        print(json.dumps([mismatched, int(c.execute("GET", key)), c.execute("DEL", key)]))
        """,
        redis_url,
    )
    assert out == [[], 300, 1]


def test_the_selected_database_is_used(redis_url):
    base = redis.Redis.from_url(redis_url)
    other = (base.connection_pool.connection_kwargs.get("db") or 0) + 1
    out = run(
        f"""
        c = client(db={other})
        c.execute("SET", "respmux-test-db", "here")
        print(json.dumps(c.execute("GET", "respmux-test-db").decode()))
        """,
        redis_url,
    )
    kw = base.connection_pool.connection_kwargs
    probe = redis.Redis(host=kw["host"], port=kw["port"], password=kw.get("password"), db=other)
    assert out == "here" and probe.get("respmux-test-db") == b"here"
    probe.delete("respmux-test-db")


def test_a_flushed_script_cache_is_reloaded_and_errors_leave_the_connection_usable(redis_url):
    out = run(
        """
        c = client()
        script = Script(c, "return 'v1'")
        first = script()
        c.execute("SCRIPT", "FLUSH")
        again = script()
        try:
            Script(c, "return redis.call('NOSUCHCOMMAND')")()
            error = None
        except ResponseError as exc:
            error = type(exc).__name__
        print(json.dumps([first.decode(), again.decode(), error, c.execute("PING").decode()]))
        """,
        redis_url,
    )
    assert out == ["v1", "v1", "ResponseError", "PONG"]


def test_redis_unreachable_is_a_connection_error(redis_url):
    out = run(
        """
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        c = client(host="127.0.0.1", port=port)
        try:
            c.execute("PING")
        except ConnectionError as exc:
            print(json.dumps(type(exc).__name__))
        """,
        redis_url,
    )
    assert out == "ConnectionError"


def test_a_silent_server_times_out_every_call_in_flight(redis_url):
    out = run(
        """
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
        c = client(host="127.0.0.1", port=server.getsockname()[1], socket_timeout=0.3)
        def call():
            try:
                c.execute("PING")
            except TimeoutError:
                return "timeout"
        started = time.monotonic()
        jobs = [gevent.spawn(call) for _ in range(3)]
        gevent.joinall(jobs)
        print(json.dumps([[j.value for j in jobs], time.monotonic() - started < 2]))
        """,
        redis_url,
    )
    assert out == [["timeout"] * 3, True]


def test_after_the_server_drops_the_connection_the_next_call_reconnects(redis_url):
    out = run(
        """
        c = client()
        first = int(c.execute("CLIENT", "ID"))
        redis.Redis.from_url(URL).client_kill_filter(_id=first)
        gevent.sleep(0.1)  # the reader sees the connection close
        second = int(c.execute("CLIENT", "ID"))
        print(json.dumps([second != first, c.execute("PING").decode()]))
        """,
        redis_url,
    )
    assert out == [True, "PONG"]


def test_a_link_idle_longer_than_the_timeout_stays_open(redis_url):
    """Timeouts belong to calls waiting for a reply, not to an idle connection."""
    out = run(
        """
        c = client(socket_timeout=0.3)
        first = int(c.execute("CLIENT", "ID"))
        gevent.sleep(0.8)
        print(json.dumps(int(c.execute("CLIENT", "ID")) == first))
        """,
        redis_url,
    )
    assert out is True
