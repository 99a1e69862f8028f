"""Both script transports, infra/respmux.py's MuxClient ("mux", the web worker's) and
infra/respclient.py's ScriptClient ("pooled"), in a gevent-patched process as the web
worker runs them, against real Redis servers over plain TCP and over TLS."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings

from tests.infra.gevent_probe import ProbeError
from tests.infra.redis_servers import SERVER_NAME

POOL_SIZE = 16  # the probe's ScriptClient default


@dataclass
class Served:
    """A Redis to test against: the URL the client gets and a redis-py client to check."""

    tls: bool
    url_for_db: Callable[[int], str]
    admin_for_db: Callable[[int], redis.Redis]

    def url(self, db: int = 0) -> str:
        return self.url_for_db(db)

    def admin(self, db: int = 0) -> redis.Redis:
        return self.admin_for_db(db)


@pytest.fixture(params=["mux", "pooled"])
def transport(request) -> str:
    return request.param


@pytest.fixture(params=["tcp", "tls"])
def served(request) -> Served:
    """The suite's Redis over plain TCP, or this session's TLS-only redis-server."""
    if request.param == "tls":
        server = request.getfixturevalue("tls_server")
        return Served(True, lambda db: server.url(SERVER_NAME, db=db), server.admin)
    base = redis.connection.parse_url(request.getfixturevalue("redis_url"))
    auth = f":{base['password']}@" if base.get("password") else ""
    where = f"{base.get('host', 'localhost')}:{base.get('port', 6379)}"
    return Served(
        False,
        lambda db: f"redis://{auth}{where}/{db}",
        lambda db: redis.Redis.from_url(f"redis://{auth}{where}/{db}"),
    )


def _key(name: str) -> str:
    return settings.FAST_STATE_PREFIX + name  # the autouse fast_state fixture clears these


def _fresh_source(body: str) -> str:
    """A script Redis has never seen, so its first EVALSHA answers NOSCRIPT."""
    return f"-- {uuid.uuid4().hex}\n{body}"


def test_a_script_is_loaded_on_first_use_and_run(probe, transport, served):
    source = _fresh_source("return {ARGV[1], 7, tonumber(ARGV[2]) + 1, false}")
    sha = hashlib.sha1(source.encode()).hexdigest()
    admin = served.admin()
    assert admin.script_exists(sha) == [False]

    opened = probe.open_client(name="c", transport=transport, url=served.url())
    assert opened["tls"] is served.tls
    if transport == "pooled":  # under gevent its callers wait on gevent's own semaphore
        assert opened["semaphore"].startswith("gevent.")
        assert opened["semaphore"].endswith(".BoundedSemaphore")
    assert probe.run_script(name="c", source=source, args=["a", 41]) == ["a", 7, 42, None]
    assert admin.script_exists(sha) == [True]  # NOSCRIPT answered by SCRIPT LOAD
    assert probe.run_script(name="c", source=source, args=["b", 1]) == ["b", 7, 2, None]
    assert probe.opened(name="c") == 1


def test_an_error_reply_is_raised_and_the_connection_stays_usable(probe, transport, served):
    probe.open_client(name="c", transport=transport, url=served.url())
    with pytest.raises(ProbeError, match="boom") as raised:
        probe.run_script(name="c", source="return redis.error_reply('boom')")
    assert raised.value.type == "ResponseError"
    assert probe.execute(name="c", command=["PING"]) == "PONG"
    assert probe.opened(name="c") == 1


def test_many_greenlets_at_once_each_get_their_own_reply(probe, transport, served):
    probe.open_client(name="c", transport=transport, url=served.url())
    key = _key("callers")
    out = probe.many_callers(name="c", callers=300, key=key)
    assert out == {"mismatched": [], "count": 300, "loop_ran_meanwhile": True}
    if transport == "mux":
        assert probe.opened(name="c") == 1  # every greenlet on one connection
    else:
        assert 1 <= probe.opened(name="c") <= POOL_SIZE
    served.admin().delete(key)


def test_calls_sent_before_any_reply_is_read(probe, transport, served):
    probe.open_client(name="c", transport=transport, url=served.url())
    assert probe.pipelined(name="c", calls=12) == [2 * i for i in range(12)]
    # the pooled client holds a connection per call still owed a reply
    assert probe.opened(name="c") == (1 if transport == "mux" else 12)


def test_the_url_s_database_is_used(probe, transport, served):
    key = _key("db")
    probe.open_client(name="c", transport=transport, url=served.url(db=5))
    assert probe.execute(name="c", command=["SET", key, "here", "PX", 60000]) == "OK"
    try:
        assert served.admin(db=5).get(key) == b"here"
        assert served.admin(db=0).get(key) is None
    finally:
        served.admin(db=5).delete(key)


def test_after_a_script_flush_and_a_server_restart_scripts_run_again(
    probe, transport, fresh_server
):
    """A private server (plain or TLS): flushed, then killed and started again on its
    port. The first call after the restart connects anew and loads the script again."""
    source = "return 'still here'"
    probe.open_client(name="c", transport=transport, url=fresh_server.url(SERVER_NAME))
    assert probe.run_script(name="c", source=source) == "still here"

    fresh_server.admin().script_flush()
    assert probe.run_script(name="c", source=source) == "still here"
    assert probe.opened(name="c") == 1

    fresh_server.restart()
    # Let the event loop run once, as it does in a worker between requests: respmux's
    # reader sees the old connection close (ScriptClient finds its pooled one closed
    # when it next uses it, and connects again).
    probe.sleep(seconds=0.05)
    assert probe.run_script(name="c", source=source) == "still here"
    assert probe.opened(name="c") == 2


def test_calls_while_the_server_is_down_fail_as_connection_errors(probe, transport, fresh_server):
    probe.open_client(
        name="c", transport=transport, url=fresh_server.url(SERVER_NAME), connect_timeout=0.5
    )
    assert probe.execute(name="c", command=["PING"]) == "PONG"
    fresh_server.stop()
    with pytest.raises(ProbeError) as raised:
        probe.execute(name="c", command=["PING"])
    assert "ConnectionError" in raised.value.classes
    fresh_server.start()
    assert probe.execute(name="c", command=["PING"]) == "PONG"


# --- TLS ------------------------------------------------------------------------------------

# (host, URL query, accepted): the test CA unless ssl_ca_certs says otherwise ("other": a
# CA that signed nothing the server has; None: the system's CAs). The certificate names
# localhost only, so 127.0.0.1 fails the host name check.
CERTIFICATE_CASES = [
    pytest.param(SERVER_NAME, {}, True, id="trusted-ca-and-name"),
    pytest.param(SERVER_NAME, {"ssl_cert_reqs": "required"}, True, id="required-explicitly"),
    pytest.param("127.0.0.1", {}, False, id="wrong-host-name"),
    pytest.param("127.0.0.1", {"ssl_check_hostname": "false"}, True, id="host-name-unchecked"),
    pytest.param(SERVER_NAME, {"ssl_ca_certs": "other"}, False, id="wrong-ca"),
    pytest.param(SERVER_NAME, {"ssl_ca_certs": None}, False, id="system-cas"),
    pytest.param(
        SERVER_NAME,
        {"ssl_ca_certs": "other", "ssl_cert_reqs": "optional"},
        False,
        id="optional-still-checks-a-presented-certificate",
    ),
    pytest.param(
        "127.0.0.1", {"ssl_ca_certs": None, "ssl_cert_reqs": "none"}, True, id="cert-reqs-none"
    ),
]


@pytest.mark.parametrize(("host", "query", "accepted"), CERTIFICATE_CASES)
def test_the_server_certificate_is_checked_as_redis_py_checks_it(
    probe, transport, tls_server, certificates, host, query, accepted
):
    if query.get("ssl_ca_certs") == "other":
        query = {**query, "ssl_ca_certs": str(certificates.other_ca)}
    url = tls_server.url(host, **query)

    with redis.Redis.from_url(url, socket_timeout=5) as redis_py:
        try:
            redis_py.ping()
            redis_py_accepted = True
        except redis.ConnectionError:
            redis_py_accepted = False
    assert redis_py_accepted is accepted

    probe.open_client(name="c", transport=transport, url=url)
    if accepted:
        assert probe.execute(name="c", command=["PING"]) == "PONG"
    else:
        with pytest.raises(ProbeError, match="certificate was refused") as raised:
            probe.execute(name="c", command=["PING"])
        assert "ConnectionError" in raised.value.classes
        assert f"{host}:{tls_server.port} over TLS" in raised.value.message


def test_username_and_password_from_the_url_over_tls(probe, transport, tls_server):
    user, password = f"portal-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = tls_server.admin()
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys="*", commands=["+@all"])
    try:
        url = tls_server.url(SERVER_NAME, db=4).replace("rediss://", f"rediss://{user}:{password}@")
        probe.open_client(name="c", transport=transport, url=url)
        assert probe.execute(name="c", command=["ACL", "WHOAMI"]) == user
        assert probe.execute(name="c", command=["SET", "auth-db", user]) == "OK"
        assert tls_server.admin(db=4).get("auth-db") == user.encode()

        probe.open_client(name="wrong", transport=transport, url=url.replace(password, "nope"))
        with pytest.raises(ProbeError, match="refused AUTH") as raised:
            probe.execute(name="wrong", command=["PING"])
        assert {"AuthenticationError", "ConnectionError"} <= set(raised.value.classes)
    finally:
        admin.acl_deluser(user)
