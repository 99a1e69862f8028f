"""Allowance counters rebuilt from Postgres: after Redis loses its data, enforcement resumes from the truth."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import Plan
from accounts.services import org_change_plan, period_containing
from apikeys.providers import KeyIdentity
from gateway import admission
from metering import tasks
from metering.quotas import current_period, quota_key, quota_reconcile
from pools.catalog import catalog_bump_version
from pools.services import model_create, pool_create, route_create, router_create
from tests.factories.metering import record

MODEL = "gemma-4-26b"


@pytest.fixture
def three_a_week(alice_org):
    plan = Plan.objects.create(
        code="three-a-week",
        name="Three a week",
        requests_per_minute=1000,
        tokens_per_minute=10**9,
        concurrent_requests=100,
        window_requests=1000,
        window_seconds=300,
        weekly_requests=3,
        weekly_tokens=10**9,
        max_active_keys=5,
    )
    sub = org_change_plan(org=alice_org, plan=plan, actor=None, now=timezone.now())
    now = timezone.now()  # a period around now, so no week boundary falls inside a test
    sub.current_period_start, sub.current_period_end = (
        now - timedelta(days=1),
        now + timedelta(days=6),
    )
    sub.save()
    model = model_create(name=MODEL, display_name="Gemma 4 26B")
    pool = pool_create(name="gemma4")
    router_create(pool=pool, name="r1", base_url="http://127.0.0.1:9", api_key="")
    route_create(model=model, pool=pool, session_id=1)  # admission needs a router to pick
    catalog_bump_version()
    return plan


def admit(key) -> str:
    """What the gateway's admission answers for one more request with `key` now."""
    decided = admission.admit(
        identity=KeyIdentity(cache_key=key.key_hash),
        request_id=f"req_{uuid.uuid4().hex[:24]}",
        model=MODEL,
        estimate=lambda entry: 10,
        now=timezone.now(),
    )
    return decided.adm.status


def counter(fast_state, org, start) -> dict:
    name = quota_key(org_id=str(org.pk), period_start_ms=int(start.timestamp() * 1000))
    return {k.decode(): int(v) for k, v in fast_state.hgetall(name).items()}


def lose_fast_state(fast_state) -> None:
    keys = list(fast_state.scan_iter(match=settings.FAST_STATE_PREFIX + "*"))
    if keys:
        fast_state.delete(*keys)


def this_period():
    return period_containing(now=timezone.now())


def test_after_redis_loses_its_data_reconcile_restores_enforcement(
    alice_org, alice_key, three_a_week, fast_state
):
    now = timezone.now()
    for seconds in (1, 2, 3):
        record(
            alice_org, key=alice_key, at=now - timedelta(seconds=seconds), prompt=100, completion=20
        )
    lose_fast_state(fast_state)

    summary = quota_reconcile(now=now)

    start = alice_org.subscriptions.get(status="active").current_period_start
    assert counter(fast_state, alice_org, start) == {"r": 3, "t": 360}
    assert summary.changed >= 1
    assert admit(alice_key) == "quota_requests"


def test_a_counter_that_drifted_low_is_corrected(alice_org, alice_key, three_a_week, fast_state):
    now = timezone.now()
    for seconds in (1, 2, 3):
        record(alice_org, key=alice_key, at=now - timedelta(seconds=seconds))
    start = alice_org.subscriptions.get(status="active").current_period_start
    # e.g. Redis restored from an old snapshot: the counter exists, so nobody reseeds it.
    fast_state.hset(
        quota_key(org_id=str(alice_org.pk), period_start_ms=int(start.timestamp() * 1000)),
        mapping={"r": 0, "t": 0},
    )
    assert admit(alice_key) == "ok"

    quota_reconcile(now=now)

    assert counter(fast_state, alice_org, start)["r"] == 3
    assert admit(alice_key) == "quota_requests"


def test_reconcile_counts_only_the_current_period(alice_org, fast_state):
    start, _ = this_period()
    record(alice_org, at=start - timedelta(minutes=1), prompt=1000)  # last period
    record(alice_org, at=start + timedelta(minutes=1), prompt=7, completion=3)

    quota_reconcile(now=start + timedelta(hours=1))

    assert counter(fast_state, alice_org, start) == {"r": 1, "t": 10}


def test_reconcile_follows_the_subscriptions_own_period(alice_org, fast_state):
    sub = alice_org.subscriptions.get(status="active")
    now = timezone.now()
    sub.current_period_start, sub.current_period_end = (
        now - timedelta(days=1),
        now + timedelta(days=6),
    )
    sub.save()
    record(alice_org, at=now - timedelta(hours=2))

    quota_reconcile(now=now)

    assert current_period(subscription=sub, now=now) == (
        sub.current_period_start,
        sub.current_period_end,
    )
    assert counter(fast_state, alice_org, sub.current_period_start) == {"r": 1, "t": 15}


def test_reconcile_is_idempotent_and_sets_every_active_org(alice_org, bob_org, fast_state):
    now = timezone.now()
    record(alice_org, at=now)

    first = quota_reconcile(now=now)
    second = quota_reconcile(now=now)

    start, _ = this_period()
    assert (first.orgs, first.changed) == (2, 2)
    assert (second.changed, second.unchanged) == (0, 2)
    assert counter(fast_state, bob_org, start) == {"r": 0, "t": 0}
    ttl = fast_state.pttl(
        quota_key(org_id=str(bob_org.pk), period_start_ms=int(start.timestamp() * 1000))
    )
    assert ttl > 86_400_000  # outlives the period by a day


def test_dry_run_reports_and_writes_nothing(alice_org, fast_state):
    record(alice_org, at=timezone.now())

    summary = quota_reconcile(now=timezone.now(), dry_run=True)

    assert summary.changes and summary.changes[0].after == (1, 15)
    assert counter(fast_state, alice_org, this_period()[0]) == {}


def test_the_task_reconciles_the_orgs_it_is_given(alice_org, bob_org, fast_state):
    result = tasks.reconcile_quotas.apply(kwargs={"org_ids": [str(alice_org.pk)]}).get()

    assert result == {"orgs": 1, "changed": 1}
    assert counter(fast_state, bob_org, this_period()[0]) == {}
