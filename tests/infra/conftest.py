"""Redis servers and a gevent-patched probe process for the fast-state transport tests.

`redis_url` is the suite's Redis (REDIS_URL: 127.0.0.1:6379 under bin/test); `tls_server`
a redis-server of this session's own speaking only TLS, with a throwaway CA;
`fresh_server` a private one (plain or TLS) a test may restart; `probe` the
gevent-patched child of tests/infra/gevent_probe.py. With CI=true a missing Redis or
redis-server fails these tests instead of skipping them.
"""

from __future__ import annotations

import os

import pytest

from tests.infra.gevent_probe import GeventProbe
from tests.infra.redis_servers import Certificates, RedisServer, ServerUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_url(settings) -> str:
    if not settings.REDIS_URL:
        _unavailable("these tests need REDIS_URL")
    return settings.REDIS_URL


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    return Certificates.make(tmp_path_factory.mktemp("certificates"))


def _started(server: RedisServer) -> RedisServer:
    try:
        return server.start()
    except ServerUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory, certificates):
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis-tls"), certificates)
    except ServerUnavailable as exc:
        _unavailable(str(exc))
    _started(server)
    yield server
    server.stop()


@pytest.fixture(params=["tcp", "tls"])
def fresh_server(request, tmp_path, certificates):
    """A private redis-server for this test only, plain TCP or TLS."""
    try:
        server = RedisServer(tmp_path / "redis", certificates if request.param == "tls" else None)
    except ServerUnavailable as exc:
        _unavailable(str(exc))
    _started(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _probes():
    running: list[GeventProbe] = []
    yield running
    for probe in running:
        probe.close()


@pytest.fixture
def probe(_probes) -> GeventProbe:
    """The session's gevent-patched probe (a new one if the last died); its clients are
    closed after each test."""
    if not _probes or _probes[-1].proc.poll() is not None:
        _probes.append(GeventProbe())
    current = _probes[-1]
    yield current
    if current.proc.poll() is None:
        current.close_all()
