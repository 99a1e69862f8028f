"""The money invariant, for any mix of requests and any order of the jobs that count them:

the ledger's usage entries add up to the priced usage events, to the micro-unit, and
the rollups add up to the events, whatever ran in between (incremental rollups in any
batch size, backfills, postings, rebuilds) and however late the events arrived.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.backfill import usage_rollup_rebuild
from metering.ledger import ledger_post_closed_hours, ledger_post_range
from metering.models import LedgerEntry, UsageEvent, UsageRollup
from metering.rollups import usage_rollup_pending
from tests.factories.metering import (
    MONDAY,
    event_totals,
    ledger_usage_totals,
    record,
    rollup_totals,
)

LAG = timedelta(minutes=15)
HOURS = 3

requests = st.fixed_dictionaries(
    {
        "org": st.integers(0, 1),
        "minute": st.integers(0, HOURS * 60 - 1),
        "second": st.integers(0, 59),
        "model": st.sampled_from(["gemma-4-26b", "qwen-3-32b"]),
        "prompt": st.integers(0, 2_000_000),
        "completion": st.one_of(st.just(0), st.integers(0, 200_000)),
        "input_per_mtok": st.one_of(st.just(0), st.integers(1, 20_000_000)),
        "output_per_mtok": st.integers(0, 60_000_000),
    }
)
jobs = st.lists(
    st.one_of(
        st.tuples(st.just("rollup"), st.integers(1, 6)),
        st.tuples(st.just("post"), st.just(0)),
        st.tuples(st.just("backfill"), st.integers(0, HOURS - 1)),
        st.tuples(st.just("rebuild"), st.just(0)),
    ),
    max_size=4,
)


class Rollback(Exception):
    pass


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(waves=st.lists(st.tuples(st.lists(requests, max_size=12), jobs), min_size=1, max_size=4))
def test_ledger_and_rollups_equal_the_priced_events_for_any_mix_and_any_order(
    alice_org, bob_org, alice_key, waves
):
    orgs = [alice_org, bob_org]
    try:
        with transaction.atomic():
            # Every hour is closed from the first wave on, so any request of a later wave is a late one.
            now = MONDAY + timedelta(hours=HOURS) + LAG
            for wave, wave_jobs in waves:
                for r in wave:
                    record(
                        orgs[r["org"]],
                        key=alice_key if r["org"] == 0 else None,
                        at=MONDAY + timedelta(minutes=r["minute"], seconds=r["second"]),
                        model=r["model"],
                        prompt=r["prompt"],
                        completion=r["completion"],
                        input_per_mtok=r["input_per_mtok"],
                        output_per_mtok=r["output_per_mtok"],
                    )
                for job, arg in wave_jobs:
                    now += timedelta(minutes=1)
                    if job == "rollup":
                        usage_rollup_pending(now=now, batch_size=arg)
                    elif job == "post":
                        ledger_post_closed_hours(now=now, lag=LAG)
                    elif job == "backfill":
                        start = MONDAY + timedelta(hours=arg)
                        usage_rollup_rebuild(start=start, end=start + timedelta(hours=1), now=now)
                    else:
                        ledger_post_range(
                            org_id=None,
                            start=MONDAY,
                            end=MONDAY + timedelta(days=1),
                            now=now,
                            lag=LAG,
                        )
            now += timedelta(minutes=1)
            usage_rollup_pending(now=now)
            ledger_post_closed_hours(now=now, lag=LAG)

            for org in orgs:
                truth = event_totals(org)
                assert ledger_usage_totals(org) == truth
                assert rollup_totals(org, granularity="hour") == truth
                assert rollup_totals(org, granularity="day") == truth
            costs = list(UsageEvent.objects.values_list("cost", flat=True))
            amounts = list(LedgerEntry.objects.values_list("amount", flat=True))
            assert sum(amounts) == sum(costs)
            rolled = UsageRollup.objects.values_list("cost", flat=True)
            assert all(type(v) is int for v in [*costs, *amounts, *rolled])
            # One usage entry per org and hour with usage; everything after it is an adjustment.
            usage_keys = list(
                LedgerEntry.objects.filter(kind="usage").values_list("idempotency_key", flat=True)
            )
            assert len(usage_keys) == len(set(usage_keys))
            raise Rollback
    except Rollback:
        pass
