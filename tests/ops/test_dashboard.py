"""The ops dashboard: what it computes from request logs, usage, router health and fast
state, what it renders, and how it looks in a real headless browser (Chromium)."""

from __future__ import annotations

import os
import secrets
import shutil
import struct
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Organization
from accounts.services import period_containing
from metering.models import NO_KEY, RequestLog, UsageEvent, UsageRollup
from ops.dashboard import percentile
from pools import services as pool_services
from pools.health import breaker_key, inflight_key
from pools.models import RouterHealth
from tests.factories.accounts import make_user
from tests.support import chromium
from tests.support.ci import IN_CI

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "ops-dashboard.png"

FAST_LATENCIES = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
SLOW_LATENCIES = [1200, 2400, 3600, 4800]


def _log(
    i: int,
    *,
    router,
    status: int,
    latency: int,
    minutes_ago: float,
    org=None,
    tokens: int = 0,
    code="",
):
    now = timezone.now()
    RequestLog.objects.create(
        request_id=f"req_dash{i:020d}",
        org=org,
        endpoint="chat.completions",
        model_name="gemma-4-26b",
        router_id=router.pk if router else None,
        status_code=status,
        error_code=code,
        latency_ms=latency,
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        created_at=now - timedelta(minutes=minutes_ago),
    )


@pytest.fixture
def traffic(db, fast_state):
    """Two pools, three routers and an hour of traffic with known latencies."""
    now = timezone.now()
    gemma = pool_services.pool_create(name="gemma4")
    qwen = pool_services.pool_create(name="qwen")
    fast = pool_services.router_create(
        pool=gemma, name="gemma-a", base_url="http://127.0.0.1:9101", api_key="rk-x"
    )
    slow = pool_services.router_create(
        pool=gemma, name="gemma-b", base_url="http://127.0.0.2:9101", api_key="rk-x"
    )
    broken = pool_services.router_create(
        pool=qwen, name="qwen-a", base_url="http://127.0.0.3:9101", api_key="rk-x"
    )
    RouterHealth.objects.create(router=fast, ok=True, latency_ms=4, checked_at=now, last_ok_at=now)
    RouterHealth.objects.create(router=slow, ok=True, latency_ms=35, checked_at=now, last_ok_at=now)
    RouterHealth.objects.create(
        router=broken, ok=False, latency_ms=2000, consecutive_failures=6, checked_at=now
    )
    now_ms = int(now.timestamp() * 1000)
    fast_state.zadd(
        inflight_key(fast.pk),
        {"req_a": now_ms + 60_000, "req_b": now_ms + 60_000, "req_c": now_ms + 60_000},
    )
    fast_state.zadd(
        inflight_key(slow.pk), {"req_d": now_ms + 60_000, "req_gone": now_ms - 1}
    )  # one expired
    fast_state.hset(breaker_key(broken.pk), mapping={"state": "open", "opened": now_ms, "fails": 6})

    big = make_user("big@example.com").personal_org
    small = make_user("small@example.com").personal_org
    Organization.objects.filter(pk=big.pk).update(name="Big Corp")
    Organization.objects.filter(pk=small.pk).update(name="Small Shop", status="paused")
    for i, latency in enumerate(FAST_LATENCIES):
        _log(
            i,
            router=fast,
            status=200,
            latency=latency,
            minutes_ago=50 - i * 5,
            org=big,
            tokens=1000,
        )
    for i, latency in enumerate(SLOW_LATENCIES):
        _log(
            100 + i,
            router=slow,
            status=502 if i == 0 else 200,
            latency=latency,
            minutes_ago=3,
            org=small,
            tokens=10,
        )
    for i in range(3):
        _log(200 + i, router=broken, status=503, latency=5, minutes_ago=1, code="no_healthy_router")
    _log(300, router=None, status=401, latency=2, minutes_ago=2, code="invalid_api_key")
    _log(301, router=fast, status=200, latency=99_999, minutes_ago=90)  # outside the hour
    for org, tokens, n in ((big, 5000, 3), (small, 300, 2)):
        for j in range(n):
            UsageEvent.objects.create(
                request_id=f"req_use{org.slug[:8]}{j:012d}",
                org=org,
                model_name="gemma-4-26b",
                prompt_tokens=tokens // 2,
                completion_tokens=tokens // 2,
                cost=tokens * 10,
                created_at=now,
            )
    # Earlier this period, already in the hour rollups (their events are counted there).
    UsageRollup.objects.create(
        org=big,
        api_key_id=NO_KEY,
        model_name="gemma-4-26b",
        granularity="hour",
        bucket_start=period_containing(now=now)[0],
        requests=2,
        prompt_tokens=1500,
        completion_tokens=500,
        cost=20_000,
        updated_at=now,
    )
    return {"fast": fast, "slow": slow, "broken": broken, "big": big, "small": small}


def test_percentile_interpolates_like_percentile_cont():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([float(v) for v in FAST_LATENCIES], 0.5) == 550
    assert percentile([float(v) for v in FAST_LATENCIES], 0.95) == pytest.approx(955)


def test_dashboard_numbers(staff_client, traffic):
    response = staff_client.get("/admin/ops/dashboard/")
    assert response.status_code == 200
    board = response.context["board"]
    pools = {pool.name: pool for pool in board.pools}
    routers = {router.name: router for pool in board.pools for router in pool.routers}

    fast = routers["gemma-a"]
    assert (fast.stats.requests, fast.stats.errors) == (10, 0)
    assert fast.stats.p50_ms == pytest.approx(550) and fast.stats.p95_ms == pytest.approx(955)
    assert (fast.up, fast.inflight, fast.breaker, fast.probe_ms) == (True, 3, "closed", 4)
    slow = routers["gemma-b"]
    assert (slow.stats.requests, slow.stats.errors, slow.stats.error_rate) == (4, 1, 0.25)
    assert slow.inflight == 1
    broken = routers["qwen-a"]
    assert (broken.up, broken.breaker, broken.consecutive_failures, broken.stats.error_rate) == (
        False,
        "open",
        6,
        1.0,
    )

    gemma = pools["gemma4"]
    assert (gemma.stats.requests, gemma.stats.errors, gemma.inflight, gemma.routers_up) == (
        14,
        1,
        4,
        2,
    )
    all_gemma = sorted(float(v) for v in FAST_LATENCIES + SLOW_LATENCIES)
    assert gemma.stats.p95_ms == pytest.approx(percentile(all_gemma, 0.95))
    assert (board.totals.requests, board.totals.errors) == (
        18,
        4,
    )  # the 401 counts, the old request does not

    assert len(board.minutes) == 60
    assert sum(m.requests for m in board.minutes) == 18
    assert sum(m.tokens for m in board.minutes) == 10 * 1000 + 4 * 10
    assert [(o.name, o.requests, o.tokens, o.plan) for o in board.top_orgs] == [
        ("Big Corp", 5, 17000, "Free"),
        ("Small Shop", 2, 600, "Free"),
    ]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="compares Postgres percentile_cont with the fallback"
)
def test_the_python_fallback_agrees_with_postgres(staff_client, traffic, monkeypatch):
    on_postgres = staff_client.get("/admin/ops/dashboard/").context["board"]
    monkeypatch.setattr(connection, "vendor", "sqlite")
    fallback = staff_client.get("/admin/ops/dashboard/").context["board"]
    for pg_pool, py_pool in zip(on_postgres.pools, fallback.pools, strict=True):
        assert py_pool.stats.p50_ms == pytest.approx(pg_pool.stats.p50_ms)
        assert py_pool.stats.p95_ms == pytest.approx(pg_pool.stats.p95_ms)
        for pg_router, py_router in zip(pg_pool.routers, py_pool.routers, strict=True):
            assert py_router.stats.p95_ms == pytest.approx(pg_router.stats.p95_ms)


def test_dashboard_page(staff_client, traffic):
    html = staff_client.get("/admin/ops/dashboard/").content.decode()
    assert html.count('<svg class="ops-chart"') == 3
    for text in (
        "Requests per minute",
        "Tokens per minute",
        "gemma-a",
        "qwen-a",
        "DOWN",
        "Big Corp",
        "Small Shop",
    ):
        assert text in html
    assert html.index("Big Corp") < html.index("Small Shop")
    assert '<b id="kpi-requests">18</b>' in html and '<b id="kpi-errors">22.2%</b>' in html
    assert "550 ms" in html and "955 ms" in html  # the fast router's p50 and p95
    for control in (
        "/admin/apikeys/apikey/",
        "/admin/accounts/organization/",
        "/admin/pools/routerpool/",
        "/admin/pools/router/",
        "/admin/pools/model/",
        "/admin/ops/accesspause/",
    ):
        assert control in html
    assert "rk-x" not in html
    assert (
        "http" + "s://cdn" not in html and '<script src="http' not in html
    )  # nothing from outside


def test_empty_dashboard(staff_client):
    html = staff_client.get("/admin/ops/dashboard/").content.decode()
    assert "No pools yet." in html and "No usage this period." in html


# --- a real browser ------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _chromium(url: str, *, profile: Path, extra: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("chromium"), *chromium.FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        timeout=120,
        check=False,  # the caller asserts on what the browser produced
        env={**os.environ, "HOME": str(profile)},
    )


@pytest.mark.django_db(transaction=True)
def test_dashboard_in_headless_chromium(live_server, settings, traffic, staff_user, tmp_path):
    if shutil.which("chromium") is None:
        message = "chromium is not installed (bin/test installs Debian's package when it can)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from tests.support import ops_urls

    settings.ROOT_URLCONF = "tests.support.ops_urls"
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain http

    def login_url() -> str:
        token = secrets.token_urlsafe(16)
        ops_urls.LOGIN_TOKENS[token] = staff_user.pk
        return f"{live_server.url}/__test__/login/{token}?next=/admin/ops/dashboard/"

    dom = _chromium(login_url(), profile=tmp_path / "dom", extra=["--dump-dom"])
    html = dom.stdout.decode()
    assert "ops-dashboard" in html, dom.stderr.decode()[-2000:]
    assert "gemma-a" in html and "Big Corp" in html and 'id="id_username"' not in html

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = _chromium(login_url(), profile=tmp_path / "shot", extra=[f"--screenshot={SCREENSHOT}"])
    assert SCREENSHOT.is_file(), shot.stderr.decode()[-2000:]
    data = SCREENSHOT.read_bytes()
    assert _png_size(data) == (1400, 1000)
    assert len(data) > 40_000  # a rendered page, not a blank one
