"""The Celery side: explicit names, keyword-only calls, retries with backoff, and the beat schedule."""

from __future__ import annotations

import inspect

import pytest
from django.conf import settings
from django.db import OperationalError

from metering import services, tasks
from metering.models import UsageEvent
from portal.celery import app
from tests.factories.metering import MONDAY, record

TASKS = {
    "metering.rollup_usage": tasks.rollup_usage,
    "metering.post_ledger": tasks.post_ledger,
    "metering.close_billing_periods": tasks.close_billing_periods,
    "metering.touch_keys_last_used": tasks.touch_keys_last_used,
    "metering.prune_request_logs": tasks.prune_request_logs,
    "metering.reconcile_quotas": tasks.reconcile_quotas,
    "metering.replay_usage_spool": tasks.replay_usage_spool,
}


@pytest.mark.parametrize("name", TASKS)
def test_each_task_is_registered_by_its_explicit_name(name):
    app.loader.import_default_modules()
    assert app.tasks[name].name == TASKS[name].name == name
    assert app.tasks[name].run.__module__ == "metering.tasks"


@pytest.mark.parametrize("name", TASKS)
def test_tasks_take_keywords_only_and_retry_with_backoff_on_outages(name):
    task = TASKS[name]
    params = list(inspect.signature(task.run).parameters.values())

    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params)
    assert (
        params[-1].kind == inspect.Parameter.VAR_KEYWORD
    )  # a `**kwargs` tail: old callers never break it
    assert OperationalError in task.autoretry_for
    assert task.retry_backoff and task.retry_jitter and task.max_retries >= 5
    assert task.acks_late


def test_the_beat_schedule_runs_every_metering_job_and_only_registered_tasks():
    app.loader.import_default_modules()
    schedule = settings.CELERY_BEAT_SCHEDULE

    metering_tasks = {
        entry["task"] for entry in schedule.values() if entry["task"].startswith("metering.")
    }
    assert metering_tasks == set(TASKS)
    assert all(entry["task"] in app.tasks for entry in schedule.values())
    assert schedule["metering.rollup_usage"]["schedule"] == 60
    # Each run expires before the next one is due: a stopped worker does not come back to a backlog.
    assert all(
        e["options"]["expires"] < e["schedule"] for e in schedule.values() if e["task"] in TASKS
    )


def test_a_task_that_hits_a_database_outage_is_retried(alice_org, monkeypatch):
    record(alice_org, at=MONDAY)
    calls = []
    real = services.usage_rollup_pending

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(services, "usage_rollup_pending", flaky)

    # Run eagerly, Celery retries at once instead of after the backoff countdown.
    result = tasks.rollup_usage.apply(kwargs={}, throw=False)

    assert result.state != "FAILURE"
    assert len(calls) == 2
    assert set(calls[0]) == {"now", "batch_size", "max_batches"}
    assert not UsageEvent.objects.filter(rolled_up_at__isnull=True).exists()
