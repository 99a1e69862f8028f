"""The processes a bench run starts and stops: upstreams, the gateway, and the one-off
Django commands (migrate, seed) in a dedicated database and fast-state namespace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = (
    str(ROOT / ".venv" / "bin" / "python")
    if (ROOT / ".venv" / "bin" / "python").exists()
    else sys.executable
)
GUNICORN = str(Path(PY).parent / "gunicorn")

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_DB", "portal_bench")  # another name: two runs side by side
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/2")
PREFIX = "bench:"


# bench/run.py --server NAME -> gunicorn's worker class. "gevent" is production's
# (portal/gunicorn.py's default); the others are alternatives to compare it with.
WORKER_CLASSES = {
    "gevent": "gevent",
    "gevent-pywsgi": "gevent_pywsgi",
    "gthread": "gthread",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(**extra: str) -> dict[str, str]:
    """Production-like settings (DEBUG off, real Postgres and Redis) with throwaway secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_", "WEB_"))}
    env.update(
        PORTAL_ENV_FILE="/nonexistent",
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",
        API_KEY_PEPPER="bench-pepper",
        AUTH_PROVIDER="supabase",
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_JWT_SECRET="bench-jwt-secret",
        DATABASE_URL=f"{PG}/{DB_NAME}",
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=REDIS_URL,
        FAST_STATE_PREFIX=PREFIX,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [PY, "manage.py", *args],
        cwd=ROOT,
        env=env or bench_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def prepare_database() -> None:
    """Create portal_bench if missing, migrate it, and empty the tables a run fills."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    manage("migrate", "--noinput", "-v0")
    with psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True) as conn:
        conn.execute("TRUNCATE request_logs, usage_events CASCADE")


def flush_fast_state() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def settle_database() -> None:
    """Pay the previous phase's maintenance debt now: vacuum and analyze the two tables
    every request writes, then checkpoint, so each phase starts from the same state
    instead of meeting an autovacuum or checkpoint midway."""
    import psycopg

    with psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) request_logs, usage_events")
        conn.execute("CHECKPOINT")


def postgres_pids() -> list[int]:
    """Postgres processes working for the benchmark: its database's backends and the
    server's own background processes (other databases' backends are someone else's)."""
    import psycopg

    try:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s OR backend_type <> 'client backend'",
                (DB_NAME,),
            ).fetchall()
    except psycopg.Error:
        return pids_named("postgres")
    return [row[0] for row in rows]


def request_log_summary(since_ms: int) -> dict[str, int]:
    """Rows the gateway wrote durably since `since_ms`: all, not 200, with usage events."""
    import psycopg

    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status_code <> 200 OR error_code <> '') "
            "FROM request_logs WHERE created_at >= to_timestamp(%s / 1000.0)",
            (since_ms,),
        ).fetchone()
        events = conn.execute(
            "SELECT count(*) FROM usage_events WHERE created_at >= to_timestamp(%s / 1000.0)",
            (since_ms,),
        ).fetchone()[0]
    return {"logged": row[0], "failed": row[1], "usage_events": events}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    url: str = ""
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """The process and its children (gunicorn's workers)."""
        found = [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return found + [int(c) for c in children]

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: only what it started
            except ProcessLookupError:
                return
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)


@dataclass
class Stack:
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as handle:  # the child holds its own copy of the descriptor
            popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name=name, popen=popen, log=log)
        self.procs.append(proc)
        return proc

    def _wait_line(self, proc: Proc, marker: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = proc.log.read_text(errors="replace")
            for line in text.splitlines():
                if marker in line:
                    return line
            if proc.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{proc.name} did not start:\n{proc.log.read_text(errors='replace')[-3000:]}"
        )

    def simulator(self, name: str, **knobs: float) -> Proc:
        port = free_port()
        command = [PY, "manage.py", "simulate_router", "--port", str(port), "--quiet"]
        for knob, value in knobs.items():
            command += [f"--{knob.replace('_', '-')}", str(value)]
        proc = self._spawn(name, command, bench_env())
        line = self._wait_line(proc, "listening on")
        proc.url = line.rsplit(" ", 1)[1].strip()
        return proc

    def canned(self, name: str = "canned", tokens: int = 16, **knobs: float) -> Proc:
        """bench/upstream.py; `knobs` are its options (latency_ms, tokens_per_second)."""
        command = [PY, str(ROOT / "bench" / "upstream.py"), "--tokens", str(tokens)]
        for knob, value in knobs.items():
            command += [f"--{knob.replace('_', '-')}", str(value)]
        proc = self._spawn(name, command, bench_env())
        line = self._wait_line(proc, "listening on")
        proc.url = line.rsplit(" ", 1)[1].strip()
        return proc

    def gateway(
        self, *, name: str, worker_class: str, workers: int, threads: int, enforcement: bool
    ) -> Proc:
        port = free_port()
        env = bench_env(
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_WORKER_CLASS=WORKER_CLASSES[worker_class],
            WEB_WORKERS=str(workers),
            WEB_THREADS=str(threads),
            WEB_ACCESS_LOG=os.environ.get("BENCH_ACCESS_LOG", "-"),
            GATEWAY_ENFORCEMENT="true" if enforcement else "false",
            # DEBUG is off: the enforcement-off baseline must be allowed explicitly
            # (portal/settings.py refuses GATEWAY_ENFORCEMENT=false otherwise).
            GATEWAY_ENFORCEMENT_OFF_ALLOWED="false" if enforcement else "true",
        )
        command = [GUNICORN, "-c", str(ROOT / "portal" / "gunicorn.py"), "portal.wsgi:application"]
        proc = self._spawn(name, command, env)
        proc.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"gateway exited:\n{proc.log.read_text(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(proc.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return proc
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(
            f"gateway did not answer /health:\n{proc.log.read_text(errors='replace')[-3000:]}"
        )

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            proc.stop()
        self.procs.clear()


def seed(sim_url: str, models: dict[str, str]) -> dict:
    """`seed_demo --router-url SIM --json`, then the bench plan and one model per upstream."""
    out = manage("seed_demo", "--router-url", sim_url, "--json")
    demo = json.loads(out.strip().splitlines()[-1])
    done = subprocess.run(
        [
            PY,
            str(ROOT / "bench" / "seed.py"),
            demo["org_id"],
            *(f"{k}={v}" for k, v in models.items()),
        ],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench/seed.py failed:\n{done.stderr[-3000:]}")
    return demo


# --- CPU and memory readings from /proc ------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def pids_named(prefix: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(prefix):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    rss = hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK


class CpuMeter:
    """Cores used per group of processes over a window, and what the rest of the machine used."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self._start: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}
        now["_machine"] = machine_cpu_seconds()
        now["_wall"] = time.monotonic()
        return now

    def start(self) -> None:
        self._start = self._read()

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Cores used per group; `extra` adds CPU seconds measured elsewhere (wrk's rusage)."""
        end = self._read()
        wall = end["_wall"] - self._start["_wall"]
        used = {name: (end[name] - self._start[name]) / wall for name in self.groups}
        for name, seconds in (extra or {}).items():
            used[name] = seconds / wall
        used["other"] = max(
            0.0, (end["_machine"] - self._start["_machine"]) / wall - sum(used.values())
        )
        return used


def wait_for_quiet(
    own: Callable[[], list[int]], *, limit: float = 0.25, timeout: float = 30.0
) -> float:
    """Wait (up to `timeout` s) until the machine uses less than `limit` cores over half a
    second, and return what processes other than ours used in the last reading.

    Between measurements nothing of the benchmark's should run, so the whole machine is
    judged: work left over from the previous phase (Postgres autovacuum and checkpoints
    after thousands of inserts, a worker finishing) counts as much as other programs.
    Other work on a 2-core machine moves every figure."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, own0, t0 = machine_cpu_seconds(), cpu_seconds(own()), time.monotonic()
        time.sleep(0.5)
        wall = time.monotonic() - t0
        busy = (machine_cpu_seconds() - busy0) / wall
        other = max(0.0, busy - (cpu_seconds(own()) - own0) / wall)
        if busy < limit or time.monotonic() > deadline:
            return other
