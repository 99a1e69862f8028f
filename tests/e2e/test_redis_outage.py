"""Redis (fast state) going away under a live gateway: 503 fast_state_unavailable with a
retry-after, never a 500; service back on the first request after Redis is, with no
restart; and FAST_STATE_DEGRADED=serve_recent_keys serving keys the process knows."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
import requests

from metering.models import UsageEvent
from metering.quotas import current_period, quota_key
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import free_port
from tests.support.wire import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class OwnRedis:
    """A redis-server of the test's own, on a fixed port, that it stops and starts."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        eventually(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path, settings):
    """The gateways this test starts use it (the test process keeps the suite's Redis)."""
    server = OwnRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.stop()


def chat(url: str, secret: str, *, stream: bool = False) -> requests.Response:
    response = requests.post(
        f"{url}/v1/chat/completions",
        json={
            "model": seeding.MODEL,
            "messages": [{"role": "user", "content": "Are you there?"}],
            "stream": stream,
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    response.content  # noqa: B018 (read the whole answer)
    return response


def test_without_redis_requests_get_503_with_retry_after_and_service_resumes_on_restart(
    simulators, gateway, own_redis
):
    (sim,) = simulators(1)
    seeding.catalog(router_urls=[sim.url])
    tenant = seeding.tenant()
    server = gateway()
    assert chat(server.url, tenant.secret).status_code == 200

    own_redis.stop()
    for stream in (False, True):
        started = time.monotonic()
        response = chat(server.url, tenant.secret, stream=stream)
        assert time.monotonic() - started < 5
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert_stable_error(response.json(), code="fast_state_unavailable")

    own_redis.start()  # empty: every counter rebuilds from Postgres
    assert eventually(lambda: chat(server.url, tenant.secret).status_code == 200, timeout=10)
    assert chat(server.url, tenant.secret, stream=True).status_code == 200


def test_degraded_mode_serves_recent_keys_with_per_process_limits(
    simulators, gateway, own_redis, settings
):
    (sim,) = simulators(1)
    seeding.catalog(router_urls=[sim.url])
    known = seeding.tenant(on_plan=seeding.plan(code="three-a-minute", requests_per_minute=3))
    unknown = seeding.tenant(email="stranger@example.com")
    server = gateway(FAST_STATE_DEGRADED="serve_recent_keys")
    assert chat(server.url, known.secret).status_code == 200  # this process now knows the key

    client = redis.Redis.from_url(own_redis.url)
    client.flushall()  # forget the minute's count: the outage starts the per-process one
    own_redis.stop()
    answers = [chat(server.url, known.secret).status_code for _ in range(4)]
    if settings.KEY_PROVIDER == "unkey":
        # Unkey counts the key's requests/min too, the one before the outage included.
        assert answers == [200, 200, 429, 429]
    else:
        assert answers == [200, 200, 200, 429]  # the plan's requests/min, in this process
    refused = chat(server.url, unknown.secret)
    assert refused.status_code == 503
    assert_stable_error(refused.json(), code="fast_state_unavailable")

    own_redis.start()
    served = UsageEvent.objects.filter(org_id=known.org.pk)
    billed = 1 + answers.count(200)
    assert eventually(lambda: served.count() == billed, timeout=10)
    # Redis is back: the allowance counter of the org served meanwhile is rebuilt from Postgres.
    start, _ = current_period(
        subscription=known.org.subscriptions.get(), now=served.first().created_at
    )
    name = quota_key(org_id=str(known.org.pk), period_start_ms=int(start.timestamp() * 1000))

    def counter():
        values = redis.Redis.from_url(own_redis.url).hmget(name, "r", "t")
        return None if values[0] is None else (int(values[0]), int(values[1]))

    tokens = sum(e.prompt_tokens + e.completion_tokens for e in served)
    assert eventually(lambda: counter() == (billed, tokens), timeout=15)
