"""The processes end-to-end tests drive: router simulators and gateway servers.

Each runs in its own process group with its output in a log file, and is killed with
the whole group (gunicorn's worker included); on Linux a child also dies with pytest.
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

import requests
from django.conf import settings

from pools.simulator import SimConfig
from pools.simulator.config import LIVE_KNOBS

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
_SIM_DEFAULTS = {
    name: (sorted(value) if isinstance(value, frozenset) else value)
    for name, value in ((name, getattr(SimConfig(), name)) for name in LIVE_KNOBS)
}


# --- processes ----------------------------------------------------------------------------


def _parent_death_signal():
    """Linux: `prctl(PR_SET_PDEATHSIG, SIGKILL)`, loaded here so the forked child only calls it."""
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


_die_with_parent = _parent_death_signal() if sys.platform.startswith("linux") else None


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell or .env leaks in."""
    env = {
        name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ
    }
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
            preexec_fn=_die_with_parent,  # one foreign call, nothing that takes a lock
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
        raise RuntimeError(
            f"{self.name} did not start (exit {self.proc.returncode}):\n{self.log()[-4000:]}"
        )

    def stop(self) -> None:
        """Kill the whole group at once: nothing it was doing may outlive the test."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
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
        """Idle simulators with nothing in flight (a slow answer from an earlier test may still
        be running on one: it would show in `in_flight`); more are started as needed."""
        ready = [sim for sim in self.idle if sim.stats()["in_flight"] == 0][:count]
        if len(ready) < count:
            self._start(count - len(ready))
            ready += self.idle[-(count - len(ready)) :]
        self.idle = [sim for sim in self.idle if sim not in ready]
        return ready

    def give_back(self, sims: list[Simulator]) -> None:
        for sim in sims:
            if sim.process.proc.poll() is None:
                self.idle.append(sim)

    def stop(self) -> None:
        for sim in self.all:
            sim.process.stop()


# --- gateway servers -----------------------------------------------------------------------


_UNKEY_SETTINGS = (
    "UNKEY_ROOT_KEY",
    "UNKEY_API_ID",
    "UNKEY_BASE_URL",
    "UNKEY_TIMEOUT_MS",
    "UNKEY_FAILURE_MODE",
    "UNKEY_FAIL_OPEN_SECONDS",
    "UNKEY_KEY_PREFIX",
)


def provider_env() -> dict[str, str]:
    """The test's key-provider settings for a gateway process (nothing to add for local keys)."""
    if settings.KEY_PROVIDER != "unkey":
        return {}
    return {
        "KEY_PROVIDER": "unkey",
        **{name: str(getattr(settings, name)) for name in _UNKEY_SETTINGS},
    }


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
                        raise RuntimeError(
                            f"gateway did not answer:\n{self.process.log()[-4000:]}"
                        ) from None
                    time.sleep(0.05)
            self._url = url
        return self._url


def server_command() -> tuple[list[str], str]:
    """gunicorn with one worker of production's class (gevent, portal/gunicorn.py), else
    Django's threaded development server when gunicorn is missing."""
    if importlib.util.find_spec("gunicorn") is None:
        port = free_port()
        return [
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--skip-checks",
        ], r"Starting development server at (http://\S+)"
    from gunicorn.config import KNOWN_SETTINGS

    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--worker-class",
        "gevent",
        "--worker-connections",
        "1000",
        "--chdir",
        str(ROOT),
        "--timeout",
        "120",
        "--log-level",
        "info",
    ]
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        args.append("--no-control-socket")  # gunicorn 25+: one shared socket path for every server
    return args, r"Listening at: (http://\S+)"
