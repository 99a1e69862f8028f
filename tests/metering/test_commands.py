"""Backfill commands: idempotent, a dry run, a summary at the end, a progress bar when asked."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from metering.ledger import ledger_post_closed_hours
from metering.models import BillingPeriod, LedgerEntry, UsageEvent, UsageRollup
from metering.quotas import quota_key
from metering.rollups import usage_rollup_pending
from tests.factories.metering import (
    MONDAY,
    event_totals,
    ledger_usage_totals,
    record,
    rollup_totals,
)


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- backfill_rollups ---------------------------------------------------------------------------------


def test_backfill_rollups_counts_and_summarizes_and_a_rerun_changes_nothing(alice_org):
    for hour in range(0, 72, 5):
        record(alice_org, at=MONDAY + timedelta(hours=hour))

    out, err = run("backfill_rollups", "--start", "2026-03-02", "--end", "2026-03-05")
    again, _ = run("backfill_rollups", "--start", "2026-03-02", "--end", "2026-03-05")

    assert (
        rollup_totals(alice_org)
        == rollup_totals(alice_org, granularity="day")
        == event_totals(alice_org)
    )
    assert (
        "3 days, all orgs): 15 pending events counted; buckets: 18 created, 0 changed, 0 removed"
        in out
    )
    assert (
        "0 pending events counted; buckets: 0 created, 0 changed, 0 removed, 18 unchanged." in again
    )
    assert err == ""  # no terminal, no --progress: no bar


def test_backfill_rollups_dry_run_writes_nothing(alice_org):
    record(alice_org, at=MONDAY)

    out, _ = run(
        "backfill_rollups",
        "--start",
        "2026-03-02T00:00Z",
        "--end",
        "2026-03-02T01:00Z",
        "--dry-run",
        "-v",
        "2",
    )

    assert "Dry run" in out and "1 pending events counted; buckets: 2 created" in out
    assert "hour 2026-03-02T00:00Z" in out
    assert not UsageRollup.objects.exists()
    assert UsageEvent.objects.filter(rolled_up_at__isnull=True).count() == 1


def test_backfill_rollups_for_one_org_by_slug(alice_org, bob_org):
    record(alice_org, at=MONDAY)
    record(bob_org, at=MONDAY)

    out, _ = run(
        "backfill_rollups", "--start", "2026-03-02", "--end", "2026-03-03", "--org", alice_org.slug
    )

    assert alice_org.slug in out
    assert rollup_totals(alice_org)[0] == 1 and rollup_totals(bob_org)[0] == 0


def test_backfill_rollups_draws_a_progress_bar_on_request(alice_org):
    _, err = run("backfill_rollups", "--start", "2026-03-02", "--end", "2026-03-04", "--progress")

    assert "\rbackfill [" in err and "2/2" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--start", "2026-03-05", "--end", "2026-03-02"],
        ["--start", "soon", "--end", "2026-03-02"],
        ["--start", "2026-03-01", "--end", "2026-03-02", "--org", "no-such-org"],
    ],
)
def test_backfill_rollups_refuses_bad_arguments(db, args):
    with pytest.raises(CommandError):
        run("backfill_rollups", *args)


# --- rebuild_ledger -----------------------------------------------------------------------------------


@pytest.fixture
def posted(alice_org, bob_org):
    """A week of usage posted to the ledger, then late events the posting never saw."""
    for hour in range(0, 48, 7):
        record(alice_org, at=MONDAY + timedelta(hours=hour), prompt=1000)
        record(bob_org, at=MONDAY + timedelta(hours=hour), prompt=10)
    usage_rollup_pending(now=MONDAY + timedelta(days=3))
    ledger_post_closed_hours(now=MONDAY + timedelta(days=3), lag=timedelta(minutes=15))
    record(alice_org, at=MONDAY + timedelta(hours=7, minutes=5), prompt=5000)
    record(alice_org, at=MONDAY + timedelta(hours=30), prompt=5000)  # an hour with no entry yet
    return BillingPeriod.objects.get(org=alice_org)


def test_rebuild_ledger_by_period_id_posts_the_differences_once(alice_org, posted):
    entries_before = set(LedgerEntry.objects.values_list("pk", "amount"))

    dry, _ = run("rebuild_ledger", "--period", str(posted.pk), "--dry-run")
    assert LedgerEntry.objects.count() == len(entries_before)
    out, _ = run("rebuild_ledger", "--period", str(posted.pk))
    again, _ = run("rebuild_ledger", "--period", str(posted.pk))

    assert "Dry run" in dry and "1 usage entries and 1 adjustments posted" in dry
    assert "1 usage entries and 1 adjustments posted, net +1004 micro-USD" in out
    assert "0 usage entries and 0 adjustments posted" in again
    assert entries_before <= set(
        LedgerEntry.objects.values_list("pk", "amount")
    )  # history untouched
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)


def test_rebuild_ledger_by_date_covers_every_orgs_period_holding_it(alice_org, bob_org, posted):
    out, _ = run("rebuild_ledger", "--period", "2026-03-04", "--progress")

    assert "Ledger rebuild of 2 period(s)" in out
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)
    assert ledger_usage_totals(bob_org) == event_totals(bob_org)


def test_rebuild_ledger_refuses_an_unknown_period(db):
    with pytest.raises(CommandError):
        run("rebuild_ledger", "--period", "424242")


# --- reconcile_quotas --------------------------------------------------------------------------------


def test_reconcile_quotas_dry_run_then_for_real(alice_org, bob_org, fast_state):
    record(alice_org, at=timezone.now())
    sub = alice_org.subscriptions.get(status="active")
    name = quota_key(
        org_id=str(alice_org.pk), period_start_ms=int(sub.current_period_start.timestamp() * 1000)
    )

    dry, _ = run("reconcile_quotas", "--dry-run", "-v", "2")
    assert fast_state.hgetall(name) == {}
    out, err = run("reconcile_quotas", "--progress")

    assert "Dry run" in dry and f"{alice_org.pk}: missing -> r=1 t=15" in dry
    assert "Allowance counters of 2 org(s): 2 set from Postgres, 0 already right." in out
    assert "2/2" in err
    assert fast_state.hgetall(name) == {b"r": b"1", b"t": b"15"}


def test_reconcile_quotas_for_one_org(alice_org, bob_org):
    out, _ = run("reconcile_quotas", "--org", str(bob_org.pk))

    assert "of 1 org(s)" in out
