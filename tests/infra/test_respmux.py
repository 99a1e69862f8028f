"""The gevent worker's Redis script client (infra/respmux.py): one connection, many
greenlets. What only it does: how the shared link fails and comes back. Everything both
transports do (scripts, many callers, TLS) is in test_transports.py. Each case runs in
the gevent-patched probe process (tests/infra/gevent_probe.py), as in the web worker."""

from __future__ import annotations

import socket

import pytest
import redis

from tests.infra.gevent_probe import ProbeError


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_redis_unreachable_is_a_connection_error(probe):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here once closed
    probe.open_client(name="c", transport="mux", url=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ProbeError, match="Error connecting to Redis") as raised:
        probe.execute(name="c", command=["PING"])
    assert raised.value.type == "ConnectionError"


def test_a_silent_server_times_out_every_call_in_flight(probe, silent_server):
    probe.open_client(name="c", transport="mux", url=silent_server, socket_timeout=0.3)
    out = probe.concurrent_outcomes(name="c", command=["PING"], callers=3)
    assert out["outcomes"] == [{"error": "TimeoutError"}] * 3
    assert out["seconds"] < 2
    assert probe.opened(name="c") == 1


def test_after_the_server_drops_the_connection_the_next_call_reconnects(probe, redis_url):
    probe.open_client(name="c", transport="mux", url=redis_url)
    first = probe.execute(name="c", command=["CLIENT", "ID"])
    redis.Redis.from_url(redis_url).client_kill_filter(_id=first)
    probe.sleep(seconds=0.1)  # the reader sees the connection close
    assert probe.execute(name="c", command=["CLIENT", "ID"]) != first
    assert probe.opened(name="c") == 2


def test_a_link_idle_longer_than_the_timeout_stays_open(probe, redis_url):
    """Timeouts belong to calls waiting for a reply, not to an idle connection."""
    probe.open_client(name="c", transport="mux", url=redis_url, socket_timeout=0.3)
    first = probe.execute(name="c", command=["CLIENT", "ID"])
    probe.sleep(seconds=0.8)
    assert probe.execute(name="c", command=["CLIENT", "ID"]) == first
    assert probe.opened(name="c") == 1


def test_commands_of_greenlets_ready_together_go_out_in_one_write(probe, redis_url):
    """One wake-up of Redis for a turn of the event loop's callers, each answered its own."""
    probe.open_client(name="c", transport="mux", url=redis_url)
    assert probe.writes_for_callers(name="c", callers=50) == {"writes": 1, "mismatched": []}
    assert probe.writes_for_callers(name="c", callers=1) == {"writes": 1, "mismatched": []}
