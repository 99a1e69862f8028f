"""A real Celery worker process, the real Redis broker and Postgres (not eager mode): the rollup lands.

Skipped without Postgres and a Redis broker; with CI=true their absence is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings

from metering import tasks
from metering.models import UsageEvent
from portal.celery import app
from tests.factories.metering import MONDAY, event_totals, record, rollup_totals

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(settings.BASE_DIR)


def need(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return (
        f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


def broker_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def worker():
    """A `celery worker` process on a queue of its own, against this test's database; yields the queue."""
    need("postgresql" in settings.DATABASES["default"]["ENGINE"], "needs Postgres (DATABASE_URL)")
    broker = settings.CELERY_BROKER_URL
    need(broker.startswith("redis://"), "needs a Redis broker (CELERY_BROKER_URL)")
    need(broker_reachable(broker), f"the Redis broker at {broker} does not answer")
    queue = f"test-metering-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL or broker,
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PORTAL_ENV_FILE": "/nonexistent",
        "DEBUG": "true",
        "DB_CONN_MAX_AGE": "0",
    }
    celery = Path(sys.executable).with_name("celery")
    proc = subprocess.Popen(
        [
            str(celery),
            "-A",
            "portal",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield proc, queue
    finally:
        app.conf.task_always_eager = eager
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_rolls_up_usage_sent_through_the_broker(alice_org, worker):
    proc, queue = worker
    for minute in range(0, 90, 9):
        record(alice_org, at=MONDAY + timedelta(minutes=minute), prompt=minute)

    tasks.rollup_usage.apply_async(kwargs={}, queue=queue)

    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and UsageEvent.objects.filter(rolled_up_at__isnull=True).exists()
    ):
        assert proc.poll() is None, f"the worker exited:\n{proc.stdout.read()}"
        time.sleep(0.2)
    assert not UsageEvent.objects.filter(rolled_up_at__isnull=True).exists(), (
        "no rollup within 30 s"
    )
    assert rollup_totals(alice_org) == event_totals(alice_org)
    assert rollup_totals(alice_org, granularity="day") == event_totals(alice_org)
