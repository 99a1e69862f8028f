"""Request-log upkeep: keys' last use, and old logs pruned while usage events stay."""

from __future__ import annotations

from datetime import timedelta

from apikeys.models import ApiKey
from metering import tasks
from metering.models import RequestLog, UsageEvent
from metering.request_logs import keys_last_used_refresh, request_logs_prune
from tests.factories.metering import MONDAY, record

LOOKBACK = timedelta(minutes=15)


def last_used(key):
    return ApiKey.objects.get(pk=key.pk).last_used_at


def test_last_used_is_the_latest_request_of_each_key_failed_ones_included(
    alice_org, alice_key, alice_key2
):
    record(alice_org, key=alice_key, at=MONDAY)
    record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(minutes=3),
        prompt=0,
        completion=0,
        status=429,
    )
    record(alice_org, key=alice_key2, at=MONDAY + timedelta(minutes=1))

    touched = keys_last_used_refresh(now=MONDAY + timedelta(minutes=5), lookback=LOOKBACK)

    assert touched == 2
    assert last_used(alice_key) == MONDAY + timedelta(minutes=3)
    assert last_used(alice_key2) == MONDAY + timedelta(minutes=1)


def test_last_used_only_moves_forward(alice_org, alice_key):
    ApiKey.objects.filter(pk=alice_key.pk).update(last_used_at=MONDAY + timedelta(hours=1))
    record(alice_org, key=alice_key, at=MONDAY)

    keys_last_used_refresh(now=MONDAY + timedelta(hours=2), lookback=LOOKBACK)

    assert last_used(alice_key) == MONDAY + timedelta(hours=1)


def test_a_slow_request_that_commits_after_the_run_is_seen_by_the_next_one(
    alice_org, alice_key, alice_key2
):
    record(alice_org, key=alice_key, at=MONDAY + timedelta(minutes=10))
    keys_last_used_refresh(now=MONDAY + timedelta(minutes=11), lookback=LOOKBACK)

    # Started at :05 (before the run), committed at :14 (after it).
    record(alice_org, key=alice_key2, at=MONDAY + timedelta(minutes=5))
    keys_last_used_refresh(now=MONDAY + timedelta(minutes=15), lookback=LOOKBACK)

    assert last_used(alice_key2) == MONDAY + timedelta(minutes=5)


def test_runs_read_only_since_their_watermark(alice_org, alice_key):
    record(alice_org, key=alice_key, at=MONDAY)
    keys_last_used_refresh(now=MONDAY + timedelta(hours=1), lookback=LOOKBACK)
    ApiKey.objects.filter(pk=alice_key.pk).update(last_used_at=None)

    touched = keys_last_used_refresh(now=MONDAY + timedelta(hours=5), lookback=LOOKBACK)

    assert touched == 0  # that request is long before the previous run minus the lookback


def test_the_task_is_safe_to_deliver_twice(alice_org, alice_key):
    record(alice_org, key=alice_key, at=MONDAY)

    tasks.touch_keys_last_used.apply(kwargs={})
    tasks.touch_keys_last_used.apply(kwargs={})

    assert last_used(alice_key) == MONDAY


def test_prune_deletes_logs_past_retention_and_keeps_usage_events(alice_org):
    old = record(alice_org, at=MONDAY)
    recent = record(alice_org, at=MONDAY + timedelta(days=29))

    deleted = request_logs_prune(
        now=MONDAY + timedelta(days=30, minutes=1), retention_days=30, chunk=1
    )

    assert deleted == 1
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == [recent]
    assert UsageEvent.objects.filter(request_id=old).exists()


def test_retention_zero_keeps_everything(alice_org):
    record(alice_org, at=MONDAY)

    assert request_logs_prune(now=MONDAY + timedelta(days=3650), retention_days=0) == 0
    assert RequestLog.objects.count() == 1


def test_the_prune_task_uses_the_retention_setting(alice_org, settings):
    settings.METERING_REQUEST_LOG_RETENTION_DAYS = 1
    record(alice_org, at=MONDAY)  # long ago by the real clock

    assert tasks.prune_request_logs.apply(kwargs={}).get() == {"deleted": 1}
