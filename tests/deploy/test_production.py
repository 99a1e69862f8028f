"""The production path, as an operator follows the README's "Run in production": a fresh
virtual environment with `pip install .` only (no test extra), the documented `.env`,
migrate / collectstatic / check --deploy / createsuperuser, the demo catalog on a router,
then `bin/serve`, a Celery worker and beat. The README's blocks are run as written, with
only the machine-specific values swapped (paths, service URLs, secrets, the router).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import requests
from django.conf import settings

from tests.support import chromium, readme
from tests.support.ci import IN_CI
from tests.support.processes import Process

ROOT = Path(settings.BASE_DIR)
ARTIFACTS = ROOT / "test-artifacts"
HOST = "api.example.com"
APP_ORIGIN = "https://app.example.com"
ROUTER_PLACEHOLDER = "https://router-1.example.com"
VENV_WORD = re.compile(r"(?<![\w./-])\.venv(?=/|\s|$)")
# The names the test sets itself; each must appear in the README's production .env.
MACHINE_SPECIFIC = (
    "SECRET_KEY",
    "API_KEY_PEPPER",
    "ROUTER_KEY_ENCRYPTION_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_BEAT_SCHEDULE_FILE",
    "STATIC_ROOT",
    "ALLOWED_HOSTS",
)

pytestmark = pytest.mark.e2e


def need(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)


@dataclass
class Stack:
    url: str
    api_key: str
    database_url: str
    env: dict[str, str]
    python: Path
    processes: dict[str, Process]

    def get(self, path: str, *, https: bool = True, **kwargs) -> requests.Response:
        headers = {
            "Host": HOST,
            **({"X-Forwarded-Proto": "https"} if https else {}),
            **kwargs.pop("headers", {}),
        }
        return requests.get(
            self.url + path, headers=headers, timeout=30, allow_redirects=False, **kwargs
        )

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Host": HOST, "X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


def run_block(
    block: readme.Block,
    *,
    env: dict[str, str],
    venv: Path,
    swap: dict[str, str] | None = None,
    timeout=600,
):
    script = VENV_WORD.sub(str(venv), block.text)
    for old, new in (swap or {}).items():
        script = script.replace(old, new)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{block.where()} failed:\n{script}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def server_database(name: str) -> str:
    db = settings.DATABASES["default"]
    auth = db.get("USER") or "postgres"
    if db.get("PASSWORD"):
        auth += ":" + db["PASSWORD"]
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"


def with_db(url: str, number: int) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{number}").geturl()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need("postgresql" in settings.DATABASES["default"]["ENGINE"], "needs Postgres (DATABASE_URL)")
    need(bool(settings.REDIS_URL), "needs Redis (REDIS_URL)")
    tmp = tmp_path_factory.mktemp("production")
    venv = tmp / "venv"
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    base["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # 1. Install: the README's commands, into a fresh environment of the test's own.
    install, setup, seed = readme.tagged("sh", "prod")
    run_block(install, env=base, venv=venv)
    python = venv / "bin" / "python"
    missing = subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode
    assert missing != 0, "the production environment must not hold the test extra"

    # 2. The documented .env, with this machine's services, fresh secrets and temporary paths.
    (documented,) = readme.tagged("dotenv", "prod")
    values = readme.dotenv(documented)
    assert set(MACHINE_SPECIFIC) <= set(values), set(MACHINE_SPECIFIC) - set(values)
    db_name = f"portal_prod_{uuid.uuid4().hex[:10]}"
    broker = with_db(settings.REDIS_URL, 3)
    values.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        API_KEY_PEPPER=secrets.token_urlsafe(32),
        ROUTER_KEY_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        DATABASE_URL=server_database(db_name),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=broker,
        CELERY_BEAT_SCHEDULE_FILE=str(tmp / "beat" / "schedule"),
        STATIC_ROOT=str(tmp / "static"),
        ALLOWED_HOSTS=f"{HOST},127.0.0.1",  # Chromium asks for 127.0.0.1 (it cannot set Host)
        # Test-only: a prefix of its own in the shared Redis, and a rollup every 2 s.
        FAST_STATE_PREFIX=f"prod-{uuid.uuid4().hex[:8]}:",
        METERING_ROLLUP_SECONDS="2",
    )
    (tmp / "beat").mkdir()
    env_file = tmp / "portal.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    with psycopg.connect(server_database("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = {**base, "PORTAL_ENV_FILE": str(env_file), "ROUTER_API_KEY": "rk-production-test"}

    processes: dict[str, Process] = {}
    try:
        router = Process(
            "router",
            [str(python), "manage.py", "simulate_router", "--port", "0", "--quiet"],
            {**base, "PORTAL_ENV_FILE": "/nonexistent", "DEBUG": "true"},
            tmp / "router.log",
            ready=r"listening on (http://\S+)",
        )
        processes["router"] = router
        router_url = router.wait_for_line().group(1)

        # 3-4. Database, static files, the deploy check, an admin; the catalog on our router.
        run_block(setup, env=env, venv=venv)
        seeded = run_block(seed, env=env, venv=venv, swap={ROUTER_PLACEHOLDER: router_url})
        api_key = re.search(r"ctr_live_[0-9A-Za-z]{43}", seeded).group(0)

        # 5. The three long-running processes, as written.
        web, worker, beat = readme.tagged("sh", "prod-service")
        service_env = {
            **env,
            "PORTAL_PYTHON": str(python),
            "WEB_BIND": "127.0.0.1:0",
            "WEB_WORKERS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        }
        ready = {
            "web": r"Listening at: (http://\S+)",
            "worker": r"ready\.",
            "beat": r"beat: Starting",
        }
        for name, block in (("web", web), ("worker", worker), ("beat", beat)):
            script = VENV_WORD.sub(str(venv), block.text)
            processes[name] = Process(
                name, ["bash", "-c", script], service_env, tmp / f"{name}.log", ready[name]
            )
        url = processes["web"].wait_for_line(timeout=90).group(1).rstrip("/")
        for name in ("worker", "beat"):
            processes[name].wait_for_line(timeout=90)
        deadline = time.monotonic() + 60
        while True:  # gunicorn listens before its worker has loaded Django
            try:
                requests.get(url + "/healthz", headers={"Host": HOST}, timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, processes["web"].log()[-4000:]
                time.sleep(0.1)
        yield Stack(url, api_key, values["DATABASE_URL"], env, python, processes)
    finally:
        for process in processes.values():
            process.stop()
        with psycopg.connect(server_database("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        redis.Redis.from_url(broker).flushdb()


def logs(stack: Stack) -> str:
    return "\n".join(f"--- {name}\n{p.log()[-2500:]}" for name, p in stack.processes.items())


def test_the_production_processes_serve_what_the_readme_promises(stack):
    # Liveness over plain HTTP (load balancers); everything else is sent to https.
    assert stack.get("/healthz", https=False).status_code == 200, logs(stack)
    redirect = stack.get("/admin/login/", https=False)
    assert (
        redirect.status_code == 301
        and redirect.headers["location"] == f"https://{HOST}/admin/login/"
    )

    # The admin's stylesheets, under hashed names, served by the web process itself.
    login = stack.get("/admin/login/")
    assert login.status_code == 200, logs(stack)
    assert login.headers["strict-transport-security"].startswith("max-age=31536000")
    sheets = re.findall(r'<link[^>]+href="(/static/[^"]+\.css)"', login.text)
    assert any(re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", href) for href in sheets), (
        sheets
    )
    for href in sheets:
        css = stack.get(href, headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200, href
        assert css.headers["content-type"].startswith("text/css"), css.headers
        assert "immutable" in css.headers.get("cache-control", ""), css.headers
        assert css.headers.get("content-encoding") == "gzip" and len(css.text) > 100

    # API docs: every script and stylesheet comes from this server, none from a CDN.
    docs = stack.get("/api/docs/")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert assets and not [a for a in assets if "//" in a], assets
    for asset in assets:
        answer = stack.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "application/javascript",
            "text/css",
        }

    # The hosted API answers through the simulator.
    reply = stack.request(
        "POST",
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={
            "model": "default",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 16,
        },
    )
    assert reply.status_code == 200, (reply.text, logs(stack))
    assert reply.json()["choices"][0]["message"]["content"]

    # CORS: the configured web app's origin gets a grant, another origin none.
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = stack.request(
        "OPTIONS", "/v1/chat/completions", headers={"Origin": APP_ORIGIN, **preflight}
    )
    assert (
        allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    )
    refused = stack.request(
        "OPTIONS", "/api/v1/orgs", headers={"Origin": "https://evil.example.com", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers

    # Beat sends the rollup, the worker rolls the usage event up.
    deadline = time.monotonic() + 60
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        while True:
            pending, rolled = conn.execute(
                "SELECT count(*) FILTER (WHERE rolled_up_at IS NULL), count(*) FILTER (WHERE rolled_up_at IS NOT NULL)"
                " FROM usage_events"
            ).fetchone()
            if rolled >= 1 and pending == 0:
                break
            assert time.monotonic() < deadline, (pending, rolled, logs(stack))
            time.sleep(0.5)


SESSION_FOR_ADMIN = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.get(username="admin")
session = SessionStore()
session.update({SESSION_KEY: str(user.pk), HASH_SESSION_KEY: user.get_session_auth_hash(),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend"})
session.create()
print(session.session_key)
"""

HEADER_STYLE = "getComputedStyle(document.getElementById('header')).backgroundColor"


def test_the_admin_and_the_ops_dashboard_are_styled_under_bin_serve(stack, tmp_path):
    if not chromium.available():
        need(False, "chromium is not installed (bin/test installs Debian's package when it can)")
    made = subprocess.run(
        [str(stack.python), "manage.py", "shell", "-c", SESSION_FOR_ADMIN],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    session_key = made.stdout.strip().splitlines()[-1]

    page = chromium.Page(tmp_path / "profile")
    try:
        page.send("Network.setExtraHTTPHeaders", headers={"X-Forwarded-Proto": "https"})
        page.send("Network.setCookie", name="sessionid", value=session_key, url=stack.url + "/")
        for path, shot, marker in (
            ("/admin/", "admin-index-bin-serve.png", "#content-main .app-accounts"),
            ("/admin/ops/dashboard/", "ops-dashboard-bin-serve.png", "#ops-dashboard"),
        ):
            page.open(stack.url + path)
            assert page.evaluate(f"document.querySelector({marker!r}) !== null"), page.evaluate(
                "document.body.innerText.slice(0, 500)"
            )
            # Unstyled, the header is transparent; Django's admin paints it (--header-bg).
            assert page.evaluate(HEADER_STYLE) not in ("rgba(0, 0, 0, 0)", "transparent", None)
            loaded = page.evaluate(
                "[...document.styleSheets].filter(s => s.href).map(s => s.cssRules.length)"
            )
            assert loaded and all(count > 0 for count in loaded), loaded
            data = page.screenshot(ARTIFACTS / shot)
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    finally:
        page.close()
