"""Billing periods: closed at their end with totals from the ledger, the next one opened, the plan period advanced."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from accounts.models import PlanSubscription
from accounts.services import subscription_advance_period
from metering import tasks
from metering.adjustments import ledger_post_manual
from metering.closing import billing_period_close, billing_periods_close_due
from metering.ledger import ledger_post_closed_hours
from metering.models import BillingPeriod, LedgerEntry
from metering.periods import billing_period_for, period_bounds
from metering.rollups import usage_rollup_pending
from tests.factories.metering import MONDAY, event_totals, ledger_usage_totals, record
from tests.support.concurrency import postgres_only, run_concurrently

LAG = timedelta(minutes=15)
WEEK = timedelta(days=7)
NEXT_MONDAY = MONDAY + WEEK


@pytest.fixture
def sub(alice_org):
    """alice's allowance period pinned to the week of MONDAY."""
    sub = PlanSubscription.objects.get(org=alice_org, status="active")
    sub.current_period_start, sub.current_period_end = MONDAY, NEXT_MONDAY
    sub.save()
    return sub


def close_due(now):
    return billing_periods_close_due(now=now, lag=LAG)


def test_a_period_closes_after_its_end_with_totals_from_the_ledger_and_the_next_opens(
    alice_org, sub
):
    record(alice_org, at=MONDAY + timedelta(hours=1), prompt=1000)
    record(
        alice_org, at=MONDAY + timedelta(days=6, hours=23, minutes=59), prompt=2000
    )  # the last minute
    usage_rollup_pending(now=MONDAY + timedelta(hours=3))
    ledger_post_closed_hours(now=MONDAY + timedelta(hours=3), lag=LAG)  # only the first hour so far

    summary = close_due(NEXT_MONDAY + LAG)

    closed = BillingPeriod.objects.get(org=alice_org, start=MONDAY)
    requests, prompt, completion, cost = event_totals(alice_org)
    assert summary.periods_closed == 1
    assert (closed.status, closed.end, closed.closed_at) == (
        "closed",
        NEXT_MONDAY,
        NEXT_MONDAY + LAG,
    )
    assert (closed.requests, closed.prompt_tokens, closed.completion_tokens, closed.cost) == (
        requests,
        prompt,
        completion,
        cost,
    )
    assert closed.balance == cost
    nxt = BillingPeriod.objects.get(org=alice_org, start=NEXT_MONDAY)
    assert (nxt.end, nxt.status) == (NEXT_MONDAY + WEEK, "open")
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (NEXT_MONDAY, NEXT_MONDAY + WEEK)


def test_a_period_stays_open_until_its_last_hour_is_closed(alice_org, sub):
    billing_period_for(org_id=alice_org.pk, at=MONDAY, now=MONDAY)

    assert close_due(NEXT_MONDAY + LAG - timedelta(seconds=1)).periods_closed == 0
    assert BillingPeriod.objects.get(org=alice_org).status == "open"


def test_closing_twice_or_from_two_deliveries_changes_nothing_more(
    alice_org, sub, settings, monkeypatch
):
    settings.METERING_LEDGER_LAG_SECONDS = int(LAG.total_seconds())
    monkeypatch.setattr(tasks, "timezone", SimpleNamespace(now=lambda: NEXT_MONDAY + LAG))
    record(alice_org, at=MONDAY)
    period = billing_period_for(org_id=alice_org.pk, at=MONDAY, now=MONDAY)

    assert billing_period_close(period_id=period.pk, now=NEXT_MONDAY + LAG, lag=LAG) is True
    assert billing_period_close(period_id=period.pk, now=NEXT_MONDAY + LAG, lag=LAG) is False
    tasks.close_billing_periods.apply(kwargs={})
    tasks.close_billing_periods.apply(kwargs={})

    assert BillingPeriod.objects.filter(org=alice_org, status="closed").count() == 1
    assert LedgerEntry.objects.filter(org=alice_org).count() == 1
    assert BillingPeriod.objects.get(pk=period.pk).requests == 1


def test_a_credit_counts_in_the_balance_but_not_the_usage_cost(alice_org, sub):
    record(alice_org, at=MONDAY, prompt=10_000)
    ledger_post_manual(
        org=alice_org,
        kind="credit",
        amount=-300,
        idempotency_key="c1",
        memo="",
        actor=None,
        now=MONDAY,
    )

    close_due(NEXT_MONDAY + LAG)

    closed = BillingPeriod.objects.get(org=alice_org, start=MONDAY)
    assert closed.cost == event_totals(alice_org)[3]
    assert closed.balance == closed.cost - 300


def test_a_very_late_event_for_a_closed_period_is_booked_in_the_current_one(alice_org, sub):
    record(alice_org, at=MONDAY, prompt=1000)
    usage_rollup_pending(now=MONDAY + timedelta(hours=2))
    ledger_post_closed_hours(now=MONDAY + timedelta(hours=2), lag=LAG)
    close_due(NEXT_MONDAY + LAG)
    closed_before = BillingPeriod.objects.get(org=alice_org, start=MONDAY)

    record(
        alice_org, at=MONDAY + timedelta(hours=2), prompt=5000
    )  # e.g. restored from a gateway's spool
    usage_rollup_pending(now=NEXT_MONDAY + timedelta(hours=1))
    ledger_post_closed_hours(now=NEXT_MONDAY + timedelta(hours=1), lag=LAG)

    late = LedgerEntry.objects.get(org=alice_org, usage_hour=MONDAY + timedelta(hours=2))
    assert late.billing_period.start == NEXT_MONDAY
    closed_after = BillingPeriod.objects.get(pk=closed_before.pk)
    assert (closed_after.requests, closed_after.cost) == (
        closed_before.requests,
        closed_before.cost,
    )
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)


def test_subscriptions_without_billing_activity_still_move_to_the_next_period(alice_org, sub):
    summary = close_due(NEXT_MONDAY + timedelta(days=15))

    sub.refresh_from_db()
    assert summary.subscriptions_advanced == 1
    assert (sub.current_period_start, sub.current_period_end) == (
        NEXT_MONDAY + 2 * WEEK,
        NEXT_MONDAY + 3 * WEEK,
    )
    assert not BillingPeriod.objects.exists()


def test_advancing_a_current_subscription_period_is_a_no_op(sub):
    same = subscription_advance_period(subscription=sub, now=MONDAY + timedelta(days=3))

    assert (same.current_period_start, same.current_period_end) == (MONDAY, NEXT_MONDAY)


def test_period_bounds_follow_the_subscription_and_never_overlap_a_neighbour(alice_org, sub):
    assert period_bounds(org_id=alice_org.pk, at=MONDAY + timedelta(days=2)) == (
        MONDAY,
        NEXT_MONDAY,
    )
    assert period_bounds(org_id=alice_org.pk, at=MONDAY - timedelta(days=2)) == (
        MONDAY - WEEK,
        MONDAY,
    )
    assert period_bounds(org_id=alice_org.pk, at=NEXT_MONDAY + WEEK) == (
        NEXT_MONDAY + WEEK,
        NEXT_MONDAY + 2 * WEEK,
    )
    # An odd period someone made by hand: its neighbours are clipped to it.
    BillingPeriod.objects.create(
        org=alice_org,
        start=MONDAY + timedelta(days=3),
        end=NEXT_MONDAY + timedelta(days=3),
        opened_at=MONDAY,
    )
    assert period_bounds(org_id=alice_org.pk, at=MONDAY) == (MONDAY, MONDAY + timedelta(days=3))
    assert period_bounds(org_id=alice_org.pk, at=NEXT_MONDAY + timedelta(days=4)) == (
        NEXT_MONDAY + timedelta(days=3),
        NEXT_MONDAY + WEEK,
    )


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_closing_while_usage_is_posted_keeps_totals_equal_to_the_entries(alice_org, sub):
    """The period row lock: an entry lands either before the close (and counts) or in the next period."""
    for hour in range(0, 168, 5):
        record(alice_org, at=MONDAY + timedelta(hours=hour))
    usage_rollup_pending(now=NEXT_MONDAY + LAG)
    billing_period_for(org_id=alice_org.pk, at=MONDAY, now=MONDAY)

    run_concurrently(
        lambda: ledger_post_closed_hours(now=NEXT_MONDAY + LAG, lag=LAG),
        lambda: close_due(NEXT_MONDAY + LAG),
        lambda: close_due(NEXT_MONDAY + LAG),
    )
    ledger_post_closed_hours(now=NEXT_MONDAY + LAG, lag=LAG)

    for period in BillingPeriod.objects.filter(org=alice_org):
        booked = LedgerEntry.objects.filter(billing_period=period)
        if period.status == "closed":
            assert period.cost == sum(e.amount for e in booked)
            assert period.requests == sum(e.requests for e in booked)
    assert BillingPeriod.objects.filter(org=alice_org, status="closed").count() == 1
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)
