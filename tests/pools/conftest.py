"""The router client's and the simulated router's tests: simulators on threads, a client on
the production session settings, and one HTTP session per test to talk to a simulator."""

from __future__ import annotations

import pytest
import requests

from pools.client import RouterClient, make_pools
from pools.simulator import start_in_thread
from tests.support.mockrouter import MockRouter


@pytest.fixture
def simulator():
    """`simulator(**knobs) -> base_url`; every simulator started is stopped after the test."""
    stops = []

    def start(**knobs):
        url, stop = start_in_thread(**knobs)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def client():
    """A RouterClient on its own pools, made as in production (sizes, timeouts, no retries)."""
    pools = make_pools()
    yield RouterClient(pools=pools)
    pools.close()


@pytest.fixture
def http():
    """A `requests` session, closed after the test."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def mock_router():
    """A router answering what the test sets (tests/support/mockrouter.py)."""
    router = MockRouter()
    yield router
    router.stop()
