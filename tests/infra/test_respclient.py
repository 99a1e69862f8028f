"""The lean script client (infra/respclient.py) in this process (threads, no gevent)
against the real Redis of REDIS_URL, and how it reads a URL (TLS options included) as
redis-py does. Under gevent and over TLS: test_transports.py."""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import threading
import time

import pytest
import redis
from django.conf import settings

from infra.redisendpoint import Endpoint, tls_context
from infra.respclient import Script, ScriptClient, _Connection
from tests.infra.redis_servers import SERVER_NAME


@pytest.fixture
def client(redis_url):
    made = ScriptClient(Endpoint.from_url(redis_url))
    yield made
    made.close()


def _listener():
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_replies_match_redis_py(client, fast_state):
    source = "redis.call('SET', ARGV[1], ARGV[2]) return {redis.call('GET', ARGV[1]), 3, {1, 'x'}, false}"
    key = settings.FAST_STATE_PREFIX + "same"
    ours = Script(client, source)(args=[key, "v"])
    theirs = fast_state.register_script(source)(args=[key, "v"])
    assert ours == theirs == [b"v", 3, [1, b"x"], None]


def test_a_flushed_script_cache_is_reloaded(fresh_server):
    """A private server, plain or TLS: flushing the suite's Redis would make every other
    test's scripts load again."""
    client = ScriptClient(Endpoint.from_url(fresh_server.url(SERVER_NAME)))
    script = Script(client, "return 'still here'")
    assert script() == b"still here"
    client.execute("SCRIPT", "FLUSH")
    assert script() == b"still here"
    assert script.begin().wait() == b"still here"
    client.execute("SCRIPT", "FLUSH")
    assert script.begin().wait() == b"still here"  # a begun call reloads it too
    client.close()


def test_the_selected_database_is_used(client, fast_state):
    kw = fast_state.connection_pool.connection_kwargs
    other_db = ((kw.get("db") or 0) + 3) % 16
    other = ScriptClient(dataclasses.replace(client.endpoint, db=other_db))
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
    client = ScriptClient(Endpoint("127.0.0.1", port, connect_timeout=0.5))
    with pytest.raises(redis.ConnectionError):
        Script(client, "return 1")()


def test_a_silent_server_times_out_and_the_connection_is_dropped():
    server = _listener()
    try:
        client = ScriptClient(Endpoint("127.0.0.1", server.getsockname()[1], socket_timeout=0.2))
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


def test_a_reply_lost_midway_frees_the_slot():
    server = _listener()
    try:
        client = ScriptClient(
            Endpoint("127.0.0.1", server.getsockname()[1], socket_timeout=0.2), max_connections=1
        )
        pending = client.begin("PING")
        with pytest.raises(redis.TimeoutError):
            pending.wait()
        assert client._idle == []
        assert client._slots.acquire(timeout=0)  # the one slot is free again
    finally:
        server.close()


def _closing_server():
    """A server that accepts each connection and closes it at once; counts them."""
    server = _listener()
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def test_a_pooled_connection_closed_while_idle_is_replaced(client, redis_url):
    """Redis restarted or dropped an idle client: the call goes out again, once, on a new
    connection, since a closed connection cannot have run it."""
    first = client.execute("CLIENT", "ID")
    redis.Redis.from_url(redis_url).client_kill_filter(_id=first)
    second = client.execute("CLIENT", "ID")
    assert second != first
    assert len(client._idle) == 1
    assert client._slots.acquire(timeout=0) and client._slots.release() is None


def test_a_new_connection_closed_before_the_reply_is_not_retried():
    server, accepted = _closing_server()
    try:
        client = ScriptClient(Endpoint("127.0.0.1", server.getsockname()[1]), max_connections=1)
        with pytest.raises(redis.ConnectionError, match="closed the connection"):
            client.execute("PING")
        assert accepted == [1]
        assert client._idle == []
        assert client._slots.acquire(timeout=0)  # the slot is free again
    finally:
        server.close()


def test_a_reused_connection_is_retried_once_only():
    server, accepted = _closing_server()
    try:
        client = ScriptClient(Endpoint("127.0.0.1", server.getsockname()[1]), max_connections=1)
        client._idle.append(_Connection(socket.create_connection(server.getsockname())))
        with pytest.raises(redis.ConnectionError, match="closed the connection"):
            client.execute("PING")  # on the pooled connection, then on one new one
        assert accepted == [1, 1]
        assert client._idle == []
    finally:
        server.close()


# --- reading a URL ---------------------------------------------------------------------------


def test_an_endpoint_reads_a_url_as_redis_py_does():
    url = "rediss://portal:p%40ss@redis.example.com:6380/3?ssl_cert_reqs=none&client_name=gw"
    endpoint = Endpoint.from_url(url, socket_timeout=1.5)
    assert (endpoint.host, endpoint.port, endpoint.db) == ("redis.example.com", 6380, 3)
    assert (endpoint.username, endpoint.password) == ("portal", "p@ss")
    assert (endpoint.client_name, endpoint.socket_timeout) == ("gw", 1.5)
    assert endpoint.tls is not None and endpoint.tls.verify_mode == ssl.CERT_NONE

    plain = Endpoint.from_url("redis://localhost?db=2&socket_timeout=4")
    assert (plain.host, plain.port, plain.db, plain.socket_timeout, plain.tls) == (
        "localhost",
        6379,
        2,
        4.0,
        None,
    )
    with pytest.raises(ValueError, match="Only TCP and TLS"):
        Endpoint.from_url("unix:///run/redis.sock")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "ssl_cert_reqs=required",
        "ssl_cert_reqs=optional",
        "ssl_cert_reqs=none",
        "ssl_check_hostname=false",
        "ssl_check_hostname=true&ssl_cert_reqs=none",
        "ssl_cert_reqs=optional&ssl_check_hostname=false",
    ],
)
def test_tls_options_mean_what_they_mean_to_redis_py(query):
    options = redis.connection.parse_url(f"rediss://localhost:6380/0?{query}")
    options.pop("connection_class")
    theirs = redis.SSLConnection(**options)
    ours = tls_context(options)
    assert ours.verify_mode == theirs.cert_reqs
    assert ours.check_hostname == bool(theirs.check_hostname)


def test_tls_context_loads_the_ca_file_given(certificates):
    """Besides the system's CAs, as redis-py's context trusts them too."""
    context = tls_context({"ssl_ca_certs": str(certificates.ca)})
    subjects = [ca["subject"] for ca in context.get_ca_certs()]
    assert ((("commonName", "portal test CA"),),) in subjects
    assert ((("commonName", "some other CA"),),) not in subjects


def test_tls_options_redis_py_refuses_are_refused():
    with pytest.raises(ValueError, match="Invalid SSL Certificate Requirements Flag: sometimes"):
        tls_context({"ssl_cert_reqs": "sometimes"})
    with pytest.raises(ValueError, match="ssl_validate_ocsp"):
        tls_context({"ssl_validate_ocsp": True})
