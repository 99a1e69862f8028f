"""Usage rollups: every event counted exactly once, whatever the delivery, crash or overlap."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import transaction

from metering import rollups, tasks
from metering.backfill import usage_rollup_rebuild
from metering.models import NO_KEY, UsageEvent, UsageRollup
from metering.rollups import usage_rollup_pending
from tests.factories.metering import MONDAY, event_totals, record, rollup_totals
from tests.support.concurrency import postgres_only, run_concurrently

NOW = MONDAY + timedelta(days=2)


def bucket(org, *, granularity="hour", start=MONDAY, key=None, model="gemma-4-26b") -> UsageRollup:
    return UsageRollup.objects.get(
        org=org,
        granularity=granularity,
        bucket_start=start,
        api_key_id=key.pk if key else NO_KEY,
        model_name=model,
    )


def counts(row: UsageRollup) -> tuple[int, int, int, int]:
    return row.requests, row.prompt_tokens, row.completion_tokens, row.cost


def assert_rollups_match_events(*orgs) -> None:
    for org in orgs:
        truth = event_totals(org)
        assert rollup_totals(org, granularity="hour") == truth
        assert rollup_totals(org, granularity="day") == truth
    assert not UsageEvent.objects.filter(rolled_up_at__isnull=True).exists()


# --- incremental ----------------------------------------------------------------------------------


def test_rollup_counts_events_into_hour_and_day_buckets_per_key_and_model(
    alice_org, alice_key, alice_key2
):
    record(alice_org, key=alice_key, at=MONDAY + timedelta(minutes=5), prompt=100, completion=10)
    record(alice_org, key=alice_key, at=MONDAY + timedelta(minutes=55), prompt=200, completion=20)
    record(
        alice_org, key=alice_key, at=MONDAY + timedelta(hours=1, minutes=1), prompt=1, completion=1
    )
    record(
        alice_org,
        key=alice_key2,
        at=MONDAY + timedelta(minutes=30),
        model="qwen-3-32b",
        prompt=7,
        completion=3,
    )

    summary = usage_rollup_pending(now=NOW)

    assert summary.events == 4
    assert counts(bucket(alice_org, key=alice_key)) == (
        2,
        300,
        30,
        14 + 28,
    )  # micro-USD at 0.1 and 0.4 per token
    assert counts(bucket(alice_org, key=alice_key, start=MONDAY + timedelta(hours=1)))[:3] == (
        1,
        1,
        1,
    )
    assert counts(bucket(alice_org, key=alice_key2, model="qwen-3-32b"))[:3] == (1, 7, 3)
    assert counts(bucket(alice_org, granularity="day", key=alice_key))[:3] == (3, 301, 31)
    assert UsageRollup.objects.filter(org=alice_org).count() == 3 + 2
    assert_rollups_match_events(alice_org)


def test_cost_in_a_bucket_is_the_sum_of_each_events_rounded_up_cost(alice_org):
    # 1 token at 1 micro-USD per million tokens costs 1 micro-unit each (rounded up per request).
    for minute in range(3):
        record(
            alice_org,
            at=MONDAY + timedelta(minutes=minute),
            prompt=1,
            completion=0,
            input_per_mtok=1,
        )

    usage_rollup_pending(now=NOW)

    assert bucket(alice_org).cost == 3


def test_a_request_without_tokens_is_logged_but_not_rolled_up(alice_org):
    record(alice_org, at=MONDAY, prompt=0, completion=0, status=502, error_code="upstream_error")

    assert usage_rollup_pending(now=NOW).events == 0
    assert not UsageRollup.objects.exists()


def test_a_deleted_keys_usage_stays_in_a_no_key_bucket(alice_org, alice_key):
    record(alice_org, key=alice_key, at=MONDAY)
    UsageEvent.objects.update(api_key=None)

    usage_rollup_pending(now=NOW)

    assert bucket(alice_org).requests == 1


def test_duplicate_task_delivery_counts_each_event_once(alice_org, bob_org):
    for minute in range(0, 120, 7):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))
        record(bob_org, at=MONDAY + timedelta(minutes=minute), prompt=3)

    first = tasks.rollup_usage.apply(kwargs={}).get()
    second = tasks.rollup_usage.apply(kwargs={}).get()

    assert first["events"] == 36 and second["events"] == 0
    assert_rollups_match_events(alice_org, bob_org)


def test_small_batches_add_up_to_the_same_buckets(alice_org):
    for minute in range(0, 300, 11):
        record(alice_org, at=MONDAY + timedelta(minutes=minute), prompt=minute)

    summary = usage_rollup_pending(now=NOW, batch_size=4)

    assert summary.batches == 7
    assert_rollups_match_events(alice_org)


def test_max_batches_bounds_one_run_and_the_next_run_continues(alice_org):
    for minute in range(10):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))

    assert usage_rollup_pending(now=NOW, batch_size=3, max_batches=2).events == 6
    assert usage_rollup_pending(now=NOW, batch_size=3).events == 4
    assert_rollups_match_events(alice_org)


def test_an_event_that_commits_after_later_ones_were_rolled_up_is_still_counted(alice_org):
    """A long request starts first and commits last: a time or id watermark would skip it."""
    record(alice_org, at=MONDAY + timedelta(minutes=30))
    usage_rollup_pending(now=NOW)

    record(alice_org, at=MONDAY + timedelta(minutes=1))  # started earlier, committed later
    usage_rollup_pending(now=NOW)

    assert bucket(alice_org).requests == 2
    assert_rollups_match_events(alice_org)


def test_a_crash_between_counting_and_marking_rolls_back_both(alice_org, monkeypatch):
    for minute in range(5):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))

    def crash(**kwargs):
        raise RuntimeError("worker killed between the upsert and the mark")

    monkeypatch.setattr(rollups, "_mark_rolled_up", crash)
    with pytest.raises(RuntimeError):
        usage_rollup_pending(now=NOW)

    assert not UsageRollup.objects.exists()
    assert UsageEvent.objects.filter(rolled_up_at__isnull=True).count() == 5

    monkeypatch.undo()
    usage_rollup_pending(now=NOW)

    assert_rollups_match_events(alice_org)


def test_a_crash_in_a_later_batch_keeps_the_batches_before_it(alice_org, monkeypatch):
    for minute in range(6):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))
    real_mark = rollups._mark_rolled_up
    calls = []

    def crash_on_second_batch(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("crash")
        real_mark(**kwargs)

    monkeypatch.setattr(rollups, "_mark_rolled_up", crash_on_second_batch)
    with pytest.raises(RuntimeError):
        usage_rollup_pending(now=NOW, batch_size=2)

    assert bucket(alice_org).requests == 2
    monkeypatch.undo()
    usage_rollup_pending(now=NOW, batch_size=2)
    assert_rollups_match_events(alice_org)


def test_rollup_records_when_each_bucket_changed(alice_org):
    record(alice_org, at=MONDAY)
    usage_rollup_pending(now=NOW)
    record(alice_org, at=MONDAY + timedelta(minutes=1))

    usage_rollup_pending(now=NOW + timedelta(minutes=5))

    assert bucket(alice_org).updated_at == NOW + timedelta(minutes=5)


# --- backfill -------------------------------------------------------------------------------------


def test_backfill_replaces_wrong_buckets_with_what_the_events_say(alice_org, alice_key):
    for minute in range(0, 180, 13):
        record(alice_org, key=alice_key, at=MONDAY + timedelta(minutes=minute))
    usage_rollup_pending(now=NOW)
    # Damage: one bucket inflated, one gone, one that no event backs.
    UsageRollup.objects.filter(granularity="hour", bucket_start=MONDAY).update(requests=999, cost=1)
    UsageRollup.objects.filter(
        granularity="hour", bucket_start=MONDAY + timedelta(hours=1)
    ).delete()
    UsageRollup.objects.create(
        org=alice_org,
        api_key_id=alice_key.pk,
        model_name="ghost",
        granularity="hour",
        bucket_start=MONDAY,
        requests=5,
        updated_at=NOW,
    )

    summary = usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(days=1), now=NOW)

    assert (summary.buckets_changed, summary.buckets_created, summary.buckets_removed) == (1, 1, 1)
    assert summary.buckets_unchanged == 2  # the third hour and the day
    assert_rollups_match_events(alice_org)


def test_backfill_counts_pending_events_so_the_incremental_rollup_adds_nothing(alice_org):
    for minute in range(4):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))

    summary = usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(hours=1), now=NOW)

    assert summary.events_marked == 4
    assert usage_rollup_pending(now=NOW).events == 0
    assert_rollups_match_events(alice_org)


def test_backfill_after_incremental_and_incremental_after_backfill_agree(alice_org):
    record(alice_org, at=MONDAY)
    usage_rollup_pending(now=NOW)
    record(alice_org, at=MONDAY + timedelta(minutes=2))  # pending when the backfill starts

    usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(days=1), now=NOW)
    record(alice_org, at=MONDAY + timedelta(minutes=3))  # lands after the backfill
    usage_rollup_pending(now=NOW)
    usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(days=1), now=NOW)

    assert bucket(alice_org).requests == 3
    assert_rollups_match_events(alice_org)


def test_backfill_dry_run_reports_and_writes_nothing(alice_org):
    for minute in range(3):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))

    summary = usage_rollup_rebuild(
        start=MONDAY, end=MONDAY + timedelta(days=1), now=NOW, dry_run=True
    )

    assert (summary.events_marked, summary.buckets_created) == (3, 2)
    assert not UsageRollup.objects.exists()
    assert UsageEvent.objects.filter(rolled_up_at__isnull=True).count() == 3


def test_backfill_of_one_org_leaves_the_others_alone(alice_org, bob_org):
    record(alice_org, at=MONDAY)
    record(bob_org, at=MONDAY)
    usage_rollup_pending(now=NOW)
    UsageRollup.objects.update(requests=50)

    usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(days=1), now=NOW, org_id=alice_org.pk)

    assert rollup_totals(alice_org)[0] == 1
    assert rollup_totals(bob_org)[0] == 50


def test_backfill_of_some_hours_rebuilds_those_hours_and_their_whole_day(alice_org):
    record(alice_org, at=MONDAY + timedelta(hours=1))
    record(alice_org, at=MONDAY + timedelta(hours=5))
    usage_rollup_pending(now=NOW)
    UsageRollup.objects.update(requests=50)

    usage_rollup_rebuild(
        start=MONDAY + timedelta(hours=1), end=MONDAY + timedelta(hours=2), now=NOW
    )

    assert bucket(alice_org, start=MONDAY + timedelta(hours=1)).requests == 1
    assert bucket(alice_org, start=MONDAY + timedelta(hours=5)).requests == 50  # outside the range
    assert bucket(alice_org, granularity="day").requests == 2  # the day always from the events


# --- concurrency (real threads, real connections) -----------------------------------------------------


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_four_workers_at_once_count_each_event_once(alice_org, bob_org):
    for minute in range(0, 600, 3):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))
        record(bob_org, at=MONDAY + timedelta(minutes=minute), prompt=minute)

    results = run_concurrently(*[lambda: usage_rollup_pending(now=NOW, batch_size=7)] * 4)

    assert sum(r.events for r in results) == 400
    assert sum(1 for r in results if r.events) >= 2, "the workers should have shared the work"
    assert_rollups_match_events(alice_org, bob_org)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_backfill_beside_incremental_rollups_and_new_requests_neither_double_counts_nor_drops(
    alice_org, bob_org
):
    for minute in range(0, 240, 2):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))
    usage_rollup_pending(now=NOW, batch_size=50, max_batches=1)  # some counted, most pending
    stop = threading.Event()

    def gateway():
        for minute in range(0, 240, 3):  # requests keep landing in the hours being rebuilt
            record(alice_org, at=MONDAY + timedelta(minutes=minute, seconds=30))
            record(bob_org, at=MONDAY + timedelta(minutes=minute, seconds=30))
        stop.set()

    def incremental():
        while not stop.is_set():
            usage_rollup_pending(now=NOW, batch_size=5)
        usage_rollup_pending(now=NOW, batch_size=5)

    def backfill():
        while not stop.is_set():
            usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(hours=4), now=NOW)

    run_concurrently(gateway, incremental, incremental, backfill)
    usage_rollup_pending(now=NOW)

    assert event_totals(alice_org)[0] == 200
    assert_rollups_match_events(alice_org, bob_org)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_backfill_waits_for_an_incremental_batch_in_flight_in_the_same_day(alice_org, monkeypatch):
    """The exclusive lock: a backfill never recounts a day while a batch is half-way through adding to it.

    The batch's events lie outside the backfilled hours, so no event row lock stands in
    the way; without the lock the backfill would set the day bucket to a count that
    misses the batch, and overwrite the batch's addition once it commits.
    """
    record(alice_org, at=MONDAY + timedelta(minutes=5))
    usage_rollup_pending(now=NOW)
    for minute in range(10):
        record(alice_org, at=MONDAY + timedelta(hours=5, minutes=minute))
    counted, release = threading.Event(), threading.Event()
    real_mark = rollups._mark_rolled_up

    def slow_mark(**kwargs):
        counted.set()  # buckets upserted, events not yet marked, transaction open
        assert release.wait(10)
        real_mark(**kwargs)

    monkeypatch.setattr(rollups, "_mark_rolled_up", slow_mark)
    backfill_done = threading.Event()

    def incremental():
        usage_rollup_pending(now=NOW)

    def backfill():
        assert counted.wait(10)
        usage_rollup_rebuild(start=MONDAY, end=MONDAY + timedelta(hours=1), now=NOW)
        backfill_done.set()

    def referee():
        assert counted.wait(10)
        assert not backfill_done.wait(0.5), "the backfill ran while a batch was in flight"
        release.set()

    run_concurrently(incremental, backfill, referee)

    assert bucket(alice_org, granularity="day").requests == 11
    assert_rollups_match_events(alice_org)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_claimed_batch_is_skipped_not_waited_for(alice_org):
    """SKIP LOCKED: a second worker takes other events instead of queueing behind the first."""
    for minute in range(6):
        record(alice_org, at=MONDAY + timedelta(minutes=minute))
    claimed, done = threading.Event(), threading.Event()

    def holder():
        with transaction.atomic():
            rollups.rollup_lock_shared()
            assert len(rollups._claim(batch_size=3)) == 3
            claimed.set()
            assert done.wait(10)

    def other():
        assert claimed.wait(10)
        try:
            return usage_rollup_pending(now=NOW).events
        finally:
            done.set()

    _, others = run_concurrently(holder, other)

    assert others == 3
    assert UsageEvent.objects.filter(rolled_up_at__isnull=True).count() == 3
