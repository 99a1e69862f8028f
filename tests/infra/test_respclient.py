"""The lean script client (infra/respclient.py) against the real Redis of REDIS_URL."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import redis
from django.conf import settings

from infra import faststate
from infra.respclient import Script, ScriptClient

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def redis_url(settings):
    if not settings.REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true: these tests need REDIS_URL", pytrace=False)
        pytest.skip("REDIS_URL is not set")
    return settings.REDIS_URL


@pytest.fixture
def client(redis_url, fast_state):
    kw = fast_state.connection_pool.connection_kwargs
    made = ScriptClient(
        host=kw["host"], port=kw["port"], db=kw.get("db") or 0, password=kw.get("password")
    )
    yield made
    made.close()


def _listener():
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_faststate_runs_scripts_through_the_lean_client_over_plain_tcp(redis_url, fast_state):
    handle = faststate.script("return {ARGV[1], 7, tonumber(ARGV[2]) + 1}")
    assert isinstance(handle, Script)
    assert handle(args=["a", 41]) == [b"a", 7, 42]
    assert (
        faststate.script("return {ARGV[1], 7, tonumber(ARGV[2]) + 1}") is handle
    )  # one handle per source


def test_replies_match_redis_py(client, fast_state):
    source = "redis.call('SET', ARGV[1], ARGV[2]) return {redis.call('GET', ARGV[1]), 3, {1, 'x'}, false}"
    key = settings.FAST_STATE_PREFIX + "same"
    ours = Script(client, source)(args=[key, "v"])
    theirs = fast_state.register_script(source)(args=[key, "v"])
    assert ours == theirs == [b"v", 3, [1, b"x"], None]


def test_a_flushed_script_cache_is_reloaded(client):
    script = Script(client, "return 'still here'")
    assert script() == b"still here"
    client.execute("SCRIPT", "FLUSH")
    assert script() == b"still here"


def test_the_selected_database_is_used(client, fast_state):
    kw = fast_state.connection_pool.connection_kwargs
    other_db = ((kw.get("db") or 0) + 3) % 16
    other = ScriptClient(host=kw["host"], port=kw["port"], db=other_db, password=kw.get("password"))
    key = settings.FAST_STATE_PREFIX + "db"
    Script(other, "return redis.call('SET', ARGV[1], 'here', 'PX', 60000)")(args=[key])
    other.close()
    seen = redis.Redis(host=kw["host"], port=kw["port"], db=other_db, password=kw.get("password"))
    try:
        assert seen.get(key) == b"here"
        assert fast_state.get(key) is None  # not in the suite's own database
    finally:
        seen.delete(key)
        seen.close()


def test_a_script_error_is_raised_and_the_connection_stays_usable(client):
    with pytest.raises(redis.ResponseError, match="boom"):
        Script(client, "return redis.error_reply('boom')")()
    assert len(client._idle) == 1  # an error reply leaves the connection in step
    assert Script(client, "return 1")() == 1


def test_redis_unreachable_raises_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    client = ScriptClient(host="127.0.0.1", port=port, connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        Script(client, "return 1")()


def test_a_silent_server_times_out_and_the_connection_is_dropped():
    server = _listener()
    try:
        client = ScriptClient(host="127.0.0.1", port=server.getsockname()[1], socket_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.execute("PING")
        assert time.monotonic() - started < 2
        assert client._idle == []  # a connection with a reply still owed never goes back
    finally:
        server.close()


def test_connections_are_bounded(client):
    client.max_connections = 1
    client.wait_timeout = 0.2
    client._reset()
    assert client._slots.acquire(timeout=1)  # someone holds the only connection
    try:
        with pytest.raises(redis.ConnectionError, match="No Redis connection available"):
            client.execute("PING")
    finally:
        client._slots.release()
    assert client.execute("PING") == b"PONG"


def test_concurrent_callers_share_the_pool(client):
    script = Script(client, "return redis.call('INCR', ARGV[1])")
    key = settings.FAST_STATE_PREFIX + "n"
    threads = [
        threading.Thread(target=lambda: [script(args=[key]) for _ in range(50)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(Script(client, "return redis.call('GET', ARGV[1])")(args=[key])) == 400
    assert 1 <= len(client._idle) <= 8


def test_a_forked_process_opens_its_own_connections(client):
    client.execute("PING")
    assert len(client._idle) == 1
    client._pid = -1  # as if this were a child forked after the parent connected
    client.execute("PING")
    assert len(client._idle) == 1 and client._pid == os.getpid()


def test_a_call_can_be_sent_now_and_read_later(client):
    script = Script(client, "return tonumber(ARGV[1]) * 2")
    first = script.begin(args=[1])
    second = script.begin(args=[2])  # a second connection: the first still owes its reply
    assert client._slots.acquire(timeout=0) and client._slots.release() is None
    assert second.wait() == 4
    assert first.wait() == 2
    assert first.wait() == 2  # read once, kept
    assert len(client._idle) == 2


def test_a_begun_call_reloads_a_flushed_script(client):
    script = Script(client, "return 'back'")
    script()
    client.execute("SCRIPT", "FLUSH")
    assert script.begin().wait() == b"back"


def test_a_reply_lost_midway_frees_the_slot():
    server = _listener()
    try:
        client = ScriptClient(
            host="127.0.0.1", port=server.getsockname()[1], socket_timeout=0.2, max_connections=1
        )
        pending = client.begin("PING")
        with pytest.raises(redis.TimeoutError):
            pending.wait()
        assert client._idle == []
        assert client._slots.acquire(timeout=0)  # the one slot is free again
    finally:
        server.close()


def test_under_gevent_greenlets_wait_for_a_connection_on_gevent_s_semaphore(redis_url):
    """The gevent server's case: 50 greenlets through a pool of 2 connections, each
    waiting greenlet letting the others run (the semaphore is gevent's own)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import sys, gevent, gevent.lock, redis\n"
        "from infra.respclient import Script, ScriptClient\n"
        "kw = redis.Redis.from_url(sys.argv[1]).connection_pool.connection_kwargs\n"
        "client = ScriptClient(host=kw['host'], port=kw['port'], db=kw.get('db') or 0, max_connections=2)\n"
        "assert isinstance(client._slots, gevent.lock.BoundedSemaphore), type(client._slots)\n"
        'slow = Script(client, \'redis.call("INCR", ARGV[1]); return redis.call("GET", ARGV[1])\')\n'
        "key = 'respclient-gevent-test'\n"
        "client.execute('DEL', key)\n"
        "gevent.joinall([gevent.spawn(slow, args=[key]) for _ in range(50)], raise_error=True)\n"
        "print(int(client.execute('GET', key)), len(client._idle))\n"
        "client.execute('DEL', key)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, redis_url],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    count, idle = done.stdout.split()
    assert count == "50" and 1 <= int(idle) <= 2  # never more connections than the bound
