"""The fast-state client (infra/faststate.py): which transport runs the scripts, chosen
once per process from REDIS_URL and from whether gevent patched the process; redis://
and rediss:// alike."""

from __future__ import annotations

import uuid

import fakeredis
import pytest
import redis

from infra import faststate
from infra.faststate import Transport
from infra.respclient import Script, ScriptClient
from tests.infra.gevent_probe import GeventProbe
from tests.infra.redis_servers import SERVER_NAME

SOURCE = "return {ARGV[1], 7, tonumber(ARGV[2]) + 1}"


def test_scripts_go_through_the_pooled_client_in_a_threaded_process(redis_url):
    assert faststate.transport() is Transport.POOLED
    handle = faststate.script(SOURCE)
    assert isinstance(handle, Script) and isinstance(handle.client, ScriptClient)
    assert handle.client.endpoint.tls is None
    assert handle(args=["a", 41]) == [b"a", 7, 42]
    assert faststate.script(SOURCE) is handle  # one handle per source


def test_a_rediss_url_runs_the_same_transport_over_tls(settings, tls_server):
    settings.REDIS_URL = tls_server.url(SERVER_NAME)
    faststate.reset_client_for_tests()
    try:
        assert faststate.transport() is Transport.POOLED
        handle = faststate.script(SOURCE)
        assert handle.client.endpoint.tls is not None
        assert handle(args=["tls", 1]) == [b"tls", 7, 2]
        assert faststate.get_client().ping()  # redis-py, over TLS too
    finally:
        faststate.reset_client_for_tests()


def test_a_rediss_url_configures_redis_py_over_tls(settings):
    settings.REDIS_URL = "rediss://:secret@redis.example.com:6380/3?ssl_cert_reqs=required"
    settings.FAST_STATE_MAX_CONNECTIONS = 7
    faststate.reset_client_for_tests()
    pool = faststate.get_client().connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.max_connections == 7
    kw = pool.connection_kwargs
    assert (kw["host"], kw["port"], kw["db"], kw["password"], kw["ssl_cert_reqs"]) == (
        "redis.example.com",
        6380,
        3,
        "secret",
        "required",
    )
    faststate.reset_client_for_tests()


@pytest.mark.parametrize(
    ("url", "gevent_patched", "chosen"),
    [
        ("redis://redis.example.com:6379/0", False, Transport.POOLED),
        ("redis://redis.example.com:6379/0", True, Transport.MUX),
        ("rediss://redis.example.com:6380/0", False, Transport.POOLED),
        ("rediss://redis.example.com:6380/0?ssl_cert_reqs=none", True, Transport.MUX),
        ("unix:///run/redis/redis.sock", True, Transport.REDIS_PY),
        ("rediss://redis.example.com:6380/0?ssl_validate_ocsp=true", True, Transport.REDIS_PY),
    ],
)
def test_the_transport_follows_the_url_and_the_process(url, gevent_patched, chosen):
    client = redis.Redis.from_url(url)  # connects on first use only: never here
    assert faststate.choose_transport(client, gevent_patched=gevent_patched) is chosen


def test_without_redis_url_the_stand_in_runs_the_scripts(settings):
    settings.REDIS_URL = ""
    faststate.reset_client_for_tests()
    try:
        assert isinstance(faststate.get_client(), fakeredis.FakeRedis)
        assert faststate.choose_transport(faststate.get_client(), gevent_patched=True) is (
            Transport.REDIS_PY
        )
        assert faststate.transport() is Transport.REDIS_PY
        assert faststate.script(SOURCE)(args=["x", 1]) == [b"x", 7, 2]
        assert faststate.script(SOURCE).begin(args=["y", 2]).wait() == [b"y", 7, 3]
    finally:
        faststate.reset_client_for_tests()


@pytest.mark.parametrize("server", ["tcp", "tls"])
def test_in_the_gevent_worker_greenlets_share_one_script_connection(request, server):
    """300 greenlets at once through faststate in a gevent-patched process: the scripts
    over respmux's one connection, redis-py's commands over a pool of 4 (the others wait
    for one without blocking the loop)."""
    if server == "tls":
        url = request.getfixturevalue("tls_server").url(SERVER_NAME)
    else:
        url = request.getfixturevalue("redis_url")
    probe = GeventProbe(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_ENV_FILE": "/nonexistent",
            "DEBUG": "true",
            "REDIS_URL": url,
            "FAST_STATE_PREFIX": f"test:{uuid.uuid4().hex[:12]}:",
            "FAST_STATE_MAX_CONNECTIONS": "4",
        }
    )
    try:
        out = probe.faststate_scripts(callers=300)
    finally:
        probe.close()
    assert out == {
        "transport": "respmux",
        "mismatched": [],
        "count": 600,
        "redis_py_connections": 4,
    }
