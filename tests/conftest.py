"""Fixtures shared by more than one test directory (a directory's own are in its conftest.py):

- every test: its own fast-state namespace, the seeded plans back after a flush;
- a small cast: alice and bob with their personal orgs, an API client, staff for the admin;
- a simulated router on a thread, for tests that call the gateway in process;
- identity providers: signing keys, a JWKS endpoint, Clerk and Supabase token makers;
- live processes: router simulators, gateway servers, a fake Unkey over HTTP (tests marked
  `e2e` skip without real Postgres and Redis, and fail so with CI=true);
- the OpenAPI schema, generated once per module.

Builders of test data are in tests/factories, other helpers in tests/support.
"""

from __future__ import annotations

import uuid

import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts import jwks
from infra import faststate
from pools.simulator import start_in_thread
from tests.factories.accounts import make_user
from tests.support.admin import AdminClient
from tests.support.ci import IN_CI
from tests.support.identity import (
    CLERK_APP,
    CLERK_ISSUER,
    CLERK_JWKS_URL,
    SUPABASE_ISSUER,
    SUPABASE_JWKS_URL,
    SUPABASE_URL,
    FakeClock,
    JWKSServer,
    Provider,
    Signer,
)
from tests.support.processes import (
    GatewayServer,
    Process,
    Simulator,
    SimulatorPool,
    base_env,
    database_url,
    provider_env,
    server_command,
)
from tests.support.schema import generate_schema
from tests.support.unkey_fake import FakeUnkey, FakeUnkeyServer


def pytest_sessionstart(session):
    if IN_CI:
        engine = settings.DATABASES["default"]["ENGINE"]
        problems = []
        if "postgresql" not in engine:
            problems.append(f"CI=true needs DATABASE_URL pointing at Postgres (engine is {engine})")
        if not settings.REDIS_URL:
            problems.append("CI=true needs REDIS_URL pointing at Redis")
        if problems:
            pytest.exit("; ".join(problems), returncode=3)


# --- every test ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _default_plans(request):
    """Transactional tests flush the database after each test, seeded plans included: re-seed."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        from accounts.models import Plan
        from accounts.plan_defaults import ensure_default_plans

        ensure_default_plans(Plan)


@pytest.fixture(autouse=True)
def fast_state(settings):
    """Each test gets its own fast-state key namespace (real Redis when REDIS_URL is set)."""
    settings.FAST_STATE_PREFIX = f"test:{uuid.uuid4().hex[:12]}:"
    settings.GATEWAY_UPKEEP = False  # in process, tests run gateway.upkeep's steps themselves
    faststate.reset_client_for_tests()
    client = faststate.get_client()
    yield client
    if settings.REDIS_URL:
        keys = list(client.scan_iter(match=settings.FAST_STATE_PREFIX + "*", count=500))
        if keys:
            client.delete(*keys)
    faststate.reset_client_for_tests()


# --- a small cast ----------------------------------------------------------------------------


@pytest.fixture
def alice(db):
    return make_user("alice@example.com", name="Alice")


@pytest.fixture
def bob(db):
    return make_user("bob@example.com", name="Bob")


@pytest.fixture
def alice_org(alice):
    return alice.personal_org


@pytest.fixture
def bob_org(bob):
    return bob.personal_org


@pytest.fixture
def api():
    """An API client; `api.as_user(u)` authenticates as a portal user."""
    client = APIClient()

    def as_user(user):
        client.force_authenticate(user=user)
        return client

    client.as_user = as_user
    return client


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser("ops-staff", "staff@example.com", "pw-staff-1")


@pytest.fixture
def staff_client(staff_user) -> AdminClient:
    """The admin, logged in as `staff_user`; `.action(...)` runs a reason-asking action."""
    client = AdminClient()
    client.force_login(staff_user)
    return client


# --- identity providers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def key_a() -> Signer:
    return Signer("key-a", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def key_b() -> Signer:
    return Signer("key-b", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def ec_key() -> Signer:
    return Signer("key-ec", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def jwks_clock(monkeypatch) -> FakeClock:
    """A fresh JWKS cache, on a clock the test moves by hand (every test of tests/accounts,
    and every test that uses a provider below)."""
    clock = FakeClock()
    jwks.clear_cache()
    monkeypatch.setattr(jwks, "_clock", clock)
    yield clock
    jwks.clear_cache()


@pytest.fixture
def jwks_server():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield JWKSServer(mock)


@pytest.fixture
def clerk(settings, jwks_clock, jwks_server, key_a) -> Provider:
    settings.AUTH_PROVIDER = "clerk"
    settings.CLERK_ISSUER = CLERK_ISSUER
    settings.CLERK_JWKS_URL = CLERK_JWKS_URL
    settings.CLERK_AUTHORIZED_PARTIES = [CLERK_APP]
    jwks_server.serve(CLERK_JWKS_URL, key_a)
    claims = {
        "iss": CLERK_ISSUER,
        "sub": "user_2clerk",
        "azp": CLERK_APP,
        "sid": "sess_123",
        "email": "clerk@example.com",
        "name": "Clerk User",
    }
    return Provider("clerk", CLERK_JWKS_URL, claims, key_a)


@pytest.fixture
def supabase(settings, jwks_clock, jwks_server, key_a, ec_key) -> Provider:
    settings.AUTH_PROVIDER = "supabase"
    settings.SUPABASE_URL = SUPABASE_URL
    settings.SUPABASE_ISSUER = SUPABASE_ISSUER
    settings.SUPABASE_JWKS_URL = SUPABASE_JWKS_URL
    settings.SUPABASE_JWT_AUDIENCE = "authenticated"
    settings.SUPABASE_JWT_SECRET = ""
    jwks_server.serve(SUPABASE_JWKS_URL, key_a, ec_key)
    claims = {
        "iss": SUPABASE_ISSUER,
        "aud": "authenticated",
        "sub": str(uuid.UUID(int=7)),
        "role": "authenticated",
        "email": "supa@example.com",
        "user_metadata": {"full_name": "Supa User"},
    }
    return Provider("supabase", SUPABASE_JWKS_URL, claims, key_a)


@pytest.fixture(params=["clerk", "supabase"])
def idp(request) -> Provider:
    """Each JWKS-backed provider in turn."""
    return request.getfixturevalue(request.param)


# --- a simulated router in process ------------------------------------------------------------


@pytest.fixture
def router_url():
    """A simulated router with default knobs, on a thread of this process: its base URL."""
    url, stop = start_in_thread(quiet=True)
    yield url
    stop()


# --- live processes --------------------------------------------------------------------------
# Simulators hold no Portal state, so each xdist worker keeps a few running and hands them
# out reset to the default knobs. Gateway servers are started per test: they share the
# test's database (committed data: live tests are `transaction=True`) and its fast-state
# prefix, and are killed before the test's flush. A second process cannot see SQLite's test
# transaction or the in-process fast-state stand-in: `e2e` tests need Postgres and Redis.


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
    """`item.rep_setup`, `.rep_call`: the gateway fixture prints its logs when the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


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


# --- the OpenAPI schema ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    """The OpenAPI schema `manage.py spectacular` writes, generated once per test module."""
    return generate_schema(tmp_path_factory.mktemp("schema") / "schema.yaml")
