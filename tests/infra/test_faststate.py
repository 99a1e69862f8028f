"""The fast-state client (infra/faststate.py): a rediss:// URL is accepted, and in a
gevent-patched process (the web worker) many greenlets share its small pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import redis

from infra import faststate

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url(settings):
    if not settings.REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true: these tests need REDIS_URL", pytrace=False)
        pytest.skip("REDIS_URL is not set")
    return settings.REDIS_URL


def test_many_greenlets_share_a_small_pool_in_a_gevent_patched_process(redis_url):
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    code = """
        from gevent import monkey; monkey.patch_all()
        import json, gevent, django; django.setup()
        from infra import faststate
        count = faststate.key("gevent-count")
        echo = faststate.script("redis.call('INCR', KEYS[1]); return ARGV[1]")
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(10_000)])
        client = faststate.get_client()
        def call(i):
            client.incr(count)  # through redis-py's pool
            return echo(keys=[count], args=[f"caller-{i}"])
        jobs = [gevent.spawn(call, i) for i in range(300)]
        gevent.joinall(jobs, raise_error=True)
        ticker.kill()
        print(json.dumps({
            "mismatched": [i for i, job in enumerate(jobs) if job.value != f"caller-{i}".encode()],
            "count": int(client.get(count)),
            "connections": len(client.connection_pool._connections),
            "loop_ran_meanwhile": len(ticks) > 0,
        }))
        client.delete(count)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_ENV_FILE": "/nonexistent",
            "DEBUG": "true",
            "REDIS_URL": redis_url,
            "FAST_STATE_PREFIX": prefix,
            "FAST_STATE_MAX_CONNECTIONS": "4",
        },
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # 300 concurrent callers, 4 connections: the others waited for one without blocking the loop.
    assert out == {"mismatched": [], "count": 600, "connections": 4, "loop_ran_meanwhile": True}


def test_a_rediss_url_is_served_over_tls(settings):
    settings.REDIS_URL = "rediss://:secret@redis.example.com:6380/3?ssl_cert_reqs=required"
    settings.FAST_STATE_MAX_CONNECTIONS = 7
    faststate.reset_client_for_tests()
    pool = faststate.get_client().connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.max_connections == 7
    kw = pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["password"]) == (
        "redis.example.com",
        6380,
        3,
        "secret",
    )
