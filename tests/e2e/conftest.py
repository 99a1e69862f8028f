"""Real processes for end-to-end tests: router simulators and gateway servers.

    def test_something(simulators, gateway):
        good, bad = simulators(2)                  # `manage.py simulate_router` processes
        bad.configure(failure_rate=1.0)
        seeding.catalog(router_urls=[good.url, bad.url])
        server = gateway(ROUTER_READ_TIMEOUT="0.5")  # gunicorn, same test DB and Redis prefix
        requests.get(server.url + "/health")

Simulators hold no Portal state, so each xdist worker keeps a few running and hands
them out reset to the default knobs. Gateway servers are started per test: they share
the test's database (committed data: live tests are `transaction=True`) and its
fast-state prefix, and are killed before the test's flush.

These tests need Postgres and Redis (a second process cannot see SQLite's test
transaction or the in-process fast-state stand-in): without them they skip, and with
CI=true they fail.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.conftest import IN_CI
from tests.e2e.processes import (  # noqa: F401 (Simulator, dead_url: also imported from here by tests/ops)
    GatewayServer,
    Process,
    Simulator,
    SimulatorPool,
    base_env,
    database_url,
    dead_url,
    provider_env,
    server_command,
)
from tests.unkey_fake import FakeUnkey, FakeUnkeyServer, use_unkey

# --- skip without the real services ------------------------------------------------------


def missing_services() -> list[str]:
    problems = []
    if not settings.REDIS_URL:
        problems.append("REDIS_URL is not set")
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        problems.append("DATABASE_URL does not point at Postgres")
    return problems


def pytest_runtest_setup(item):
    if item.get_closest_marker("e2e") is None:
        return
    problems = missing_services()
    if problems:
        message = "e2e needs real Postgres and Redis: " + "; ".join(problems)
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def simulator_pool(tmp_path_factory):
    pool = SimulatorPool(tmp_path_factory.mktemp("simulators"))
    yield pool
    pool.stop()


@pytest.fixture
def simulators(simulator_pool):
    """`simulators(n, **knobs) -> [Simulator]`: running routers with default knobs and zeroed stats."""
    taken: list[Simulator] = []

    def take(count: int = 1, **knobs) -> list[Simulator]:
        sims = simulator_pool.take(count)
        taken.extend(sims)
        for sim in sims:
            sim.reset(**knobs)
        return sims

    yield take
    simulator_pool.give_back(taken)


@pytest.fixture(scope="session")
def unkey_server():
    """A fake Unkey on a local port, for this worker's tests and the gateways they start."""
    server = FakeUnkeyServer(FakeUnkey()).start()
    yield server
    server.stop()


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
def gateway(request, settings, fast_state, tmp_path):
    """`gateway(**env) -> GatewayServer`: a server process on this test's database and
    fast-state prefix; keyword arguments are extra environment (`ROUTER_READ_TIMEOUT="0.5"`)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        pytest.fail(
            "live gateway tests need @pytest.mark.django_db(transaction=True)", pytrace=False
        )
    servers: list[GatewayServer] = []

    def start(**env: str) -> GatewayServer:
        args, ready = server_command()
        environment = base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            FAST_STATE_PREFIX=settings.FAST_STATE_PREFIX,
            SECRET_KEY=settings.SECRET_KEY,
            API_KEY_PEPPER=settings.API_KEY_PEPPER,
            ROUTER_KEY_ENCRYPTION_KEY=settings.ROUTER_KEY_ENCRYPTION_KEY,
            LOG_LEVEL="WARNING",
            **{
                "DB_POOL_MAX_SIZE": "4",  # several servers share the test's Postgres
                **provider_env(),
                **{name: str(value) for name, value in env.items()},
            },
        )
        index = len(servers)
        process = Process(
            f"gateway {index}", args, environment, tmp_path / f"gateway-{index}.log", ready
        )
        server = GatewayServer(process)
        servers.append(server)
        return server

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for server in servers:
        server.process.stop()
        if failed:
            print(f"--- {server.process.name} log (tail) ---\n{server.process.log()[-3000:]}")
