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

import contextlib
import ctypes
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings

from pools.simulator import SimConfig
from pools.simulator.config import LIVE_KNOBS
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
_SIM_DEFAULTS = {
    name: (sorted(value) if isinstance(value, frozenset) else value)
    for name, value in ((name, getattr(SimConfig(), name)) for name in LIVE_KNOBS)
}


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


# --- processes ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL if pytest dies without tearing down."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell or .env leaks in."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_ENV_FILE="/nonexistent",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        DEBUG="true",
        AUTH_PROVIDER="dev",
    )
    env.update(extra)
    return env


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path, ready: str):
        self.name = name
        self.log_path = log_path
        self._ready = re.compile(ready)
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_line(self, timeout: float = START_TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = self._ready.search(self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not start (exit {self.proc.returncode}):\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # gunicorn's worker is in the group too: make sure nothing of it is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_url() -> str:
    """A router address where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


# --- router simulators -------------------------------------------------------------------


class Simulator:
    """A `manage.py simulate_router` process and its `/_sim/` control API."""

    def __init__(self, process: Process, url: str):
        self.process = process
        self.url = url
        self.http = requests.Session()

    def configure(self, **knobs) -> dict:
        response = self.http.post(f"{self.url}/_sim/config", json=knobs, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["config"]

    def stats(self) -> dict:
        return self.http.get(f"{self.url}/_sim/stats", timeout=5).json()

    def completions(self) -> int:
        """Completion requests that reached this router (failed ones included)."""
        return self.stats()["completions"]

    def reset(self, **knobs) -> None:
        self.configure(**{**_SIM_DEFAULTS, **knobs})
        assert self.http.post(f"{self.url}/_sim/reset", timeout=5).status_code == 200


class SimulatorPool:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.idle: list[Simulator] = []
        self.all: list[Simulator] = []

    def _start(self, count: int) -> None:
        processes = [
            Process(
                f"simulator {len(self.all) + i}",
                [sys.executable, "manage.py", "simulate_router", "--port", "0", "--quiet"],
                base_env(),
                self.log_dir / f"sim-{len(self.all) + i}.log",
                ready=r"listening on (http://\S+)",
            )
            for i in range(count)
        ]
        for process in processes:
            sim = Simulator(process, process.wait_for_line().group(1))
            self.all.append(sim)
            self.idle.append(sim)

    def take(self, count: int) -> list[Simulator]:
        if len(self.idle) < count:
            self._start(count - len(self.idle))
        taken, self.idle = self.idle[:count], self.idle[count:]
        return taken

    def give_back(self, sims: list[Simulator]) -> None:
        for sim in sims:
            if sim.process.proc.poll() is None:
                self.idle.append(sim)

    def stop(self) -> None:
        for sim in self.all:
            sim.process.stop()


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


# --- gateway servers -----------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test uses (the xdist worker's test database)."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(str(db['NAME']), safe='')}"


class GatewayServer:
    """A gateway process; `url` waits until it answers."""

    def __init__(self, process: Process):
        self.process = process
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            url = self.process.wait_for_line().group(1).rstrip("/")
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # gunicorn listens before its worker has loaded Django
                try:
                    requests.get(f"{url}/v1/models", timeout=START_TIMEOUT)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline or self.process.proc.poll() is not None:
                        raise RuntimeError(f"gateway did not answer:\n{self.process.log()[-4000:]}") from None
                    time.sleep(0.05)
            self._url = url
        return self._url


def _server_command() -> tuple[list[str], str]:
    if importlib.util.find_spec("gunicorn") is not None:
        return [
            sys.executable, "-m", "gunicorn", "portal.wsgi:application",
            "--bind", "127.0.0.1:0", "--workers", "1", "--worker-class", "gthread", "--threads", "16",
            "--chdir", str(ROOT), "--timeout", "120", "--graceful-timeout", "1", "--log-level", "info",
            "--no-control-socket",
        ], r"Listening at: (http://\S+)"
    # Not installed (it is not in the test extra): Django's threaded development server.
    return [
        sys.executable, "manage.py", "runserver", f"127.0.0.1:{free_port()}", "--noreload", "--skip-checks",
    ], r"Starting development server at (http://\S+)"


@pytest.fixture
def gateway(request, settings, fast_state, tmp_path):
    """`gateway(**env) -> GatewayServer`: a server process on this test's database and
    fast-state prefix; keyword arguments are extra environment (`ROUTER_READ_TIMEOUT="0.5"`)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        pytest.fail("live gateway tests need @pytest.mark.django_db(transaction=True)", pytrace=False)
    servers: list[GatewayServer] = []

    def start(**env: str) -> GatewayServer:
        args, ready = _server_command()
        environment = base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            FAST_STATE_PREFIX=settings.FAST_STATE_PREFIX,
            SECRET_KEY=settings.SECRET_KEY,
            API_KEY_PEPPER=settings.API_KEY_PEPPER,
            ROUTER_KEY_ENCRYPTION_KEY=settings.ROUTER_KEY_ENCRYPTION_KEY,
            LOG_LEVEL="WARNING",
            **{name: str(value) for name, value in env.items()},
        )
        index = len(servers)
        process = Process(f"gateway {index}", args, environment, tmp_path / f"gateway-{index}.log", ready)
        server = GatewayServer(process)
        servers.append(server)
        return server

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for server in servers:
        server.process.stop()
        if failed:
            print(f"--- {server.process.name} log (tail) ---\n{server.process.log()[-3000:]}")
