"""Real processes for end-to-end tests: router simulators and gateway servers.

    def test_something(simulators, gateway):
        good, bad = simulators(2)                  # `manage.py simulate_router` processes
        bad.configure(failure_rate=1.0)
        seeding.catalog(router_urls=[good.url, bad.url])
        server = gateway(ROUTER_READ_TIMEOUT="0.5")  # gunicorn, same test DB and Redis prefix
        requests.get(server.url + "/health")

`simulators`, `gateway` and `unkey_server` are in tests/conftest.py (tests/ops and
tests/apikeys start gateways too), the processes in tests/support/processes.py. Here: every
test of this directory runs once per key provider, and the demo catalog behind a gateway for
the agent-shaped clients.

These tests need Postgres and Redis (a second process cannot see SQLite's test
transaction or the in-process fast-state stand-in): without them they skip, and with
CI=true they fail.
"""

from __future__ import annotations

import openai
import pytest
from django.utils import timezone

from gateway.demo import seed_demo
from tests.factories import seeding
from tests.support.unkey_fake import use_unkey


@pytest.fixture(params=["local", "unkey"], autouse=True)
def key_provider(request, settings):
    """Every e2e test runs with local keys and with keys a fake Unkey issues and verifies;
    gateways started by the test get the same settings (None, or the FakeUnkey)."""
    if request.param == "local":
        yield None
        return
    server = request.getfixturevalue("unkey_server")
    server.fake.reset()
    use_unkey(settings, base_url=server.url)
    yield server.fake


@pytest.fixture
def agent(simulators, gateway):
    """(openai client, simulator, gateway server, demo account): the demo catalog on one
    simulated router behind a gateway, the client holding the demo key."""
    sims = simulators(1)
    server = gateway()
    seeding.ensure_seed_plans()
    demo = seed_demo(router_urls=[sims[0].url], router_key="", now=timezone.now())
    client = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=demo.api_key, max_retries=0, timeout=20
    )
    return client, sims[0], server, demo
