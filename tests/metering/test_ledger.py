"""The billing ledger: one usage entry per org and closed hour, adjustments for late events, integers only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from metering import ledger, tasks
from metering.adjustments import ledger_post_manual
from metering.ledger import (
    ledger_post_closed_hours,
    ledger_post_range,
    require_int,
)
from metering.models import BillingPeriod, LedgerEntry
from metering.pricing import price_micro_usd
from metering.rollups import usage_rollup_pending
from tests.factories.metering import MONDAY, event_totals, ledger_usage_totals, record
from tests.support.concurrency import postgres_only, run_concurrently

LAG = timedelta(minutes=15)


def after_hours(n: int, *, extra=timedelta(0)):
    """The moment the first `n` hours after MONDAY are closed (their end plus the lag)."""
    return MONDAY + timedelta(hours=n) + LAG + extra


def post(now):
    usage_rollup_pending(now=now)
    return ledger_post_closed_hours(now=now, lag=LAG)


def entries(org=None):
    rows = LedgerEntry.objects.order_by("usage_hour", "id")
    return list(rows.filter(org=org) if org is not None else rows)


def test_each_closed_hour_gets_one_usage_entry_per_org_equal_to_its_events(alice_org, bob_org):
    for minute in (1, 20, 59, 61, 119):
        record(alice_org, at=MONDAY + timedelta(minutes=minute), prompt=minute * 100)
    record(bob_org, at=MONDAY + timedelta(minutes=30), prompt=5)

    summary = post(after_hours(2))

    assert (summary.usage_entries, summary.adjustments) == (3, 0)
    hour0 = LedgerEntry.objects.get(org=alice_org, usage_hour=MONDAY)
    assert hour0.kind == "usage"
    assert hour0.idempotency_key == f"usage:{alice_org.pk}:2026-03-02T00:00Z"
    assert hour0.amount == event_totals(alice_org, created_at__lt=MONDAY + timedelta(hours=1))[3]
    assert hour0.requests == 3
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)
    assert ledger_usage_totals(bob_org) == event_totals(bob_org)


def test_an_hour_is_not_posted_until_it_ended_and_the_lag_passed(alice_org):
    record(alice_org, at=MONDAY + timedelta(minutes=10))

    post(MONDAY + timedelta(hours=1, minutes=14))
    assert not LedgerEntry.objects.exists()

    post(after_hours(1))
    assert len(entries()) == 1


def test_posting_twice_is_a_no_op(alice_org):
    record(alice_org, at=MONDAY)
    usage_rollup_pending(now=after_hours(1))

    first = ledger_post_closed_hours(now=after_hours(1), lag=LAG)
    again = ledger_post_closed_hours(now=after_hours(1), lag=LAG)
    much_later = ledger_post_range(
        org_id=None, start=MONDAY, end=MONDAY + timedelta(days=1), now=after_hours(30)
    )

    assert first.usage_entries == 1
    assert (again.usage_entries, again.adjustments) == (0, 0)
    assert (much_later.usage_entries, much_later.adjustments) == (0, 0)
    assert len(entries()) == 1


def test_duplicate_delivery_of_the_posting_task_posts_once(alice_org, settings):
    settings.METERING_LEDGER_LAG_SECONDS = 0
    record(alice_org, at=MONDAY)  # long closed by the real clock
    tasks.rollup_usage.apply(kwargs={})

    tasks.post_ledger.apply(kwargs={})
    tasks.post_ledger.apply(kwargs={})

    assert len(entries()) == 1


def test_a_late_event_in_a_posted_hour_becomes_an_adjustment(alice_org):
    record(alice_org, at=MONDAY + timedelta(minutes=5), prompt=1000)
    post(after_hours(1))

    record(alice_org, at=MONDAY + timedelta(minutes=50), prompt=3000)  # committed after the posting
    summary = post(after_hours(1, extra=timedelta(minutes=5)))

    first, adjustment = entries()
    assert summary.adjustments == 1
    assert adjustment.kind == "adjustment"
    assert adjustment.idempotency_key == f"usage-adjustment:{alice_org.pk}:2026-03-02T00:00Z:1"
    assert adjustment.usage_hour == MONDAY
    assert (adjustment.requests, adjustment.prompt_tokens) == (1, 3000)
    assert first.amount + adjustment.amount == event_totals(alice_org)[3]
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)
    # And then nothing more to say.
    assert post(after_hours(3)).adjustments == 0


def test_a_late_event_is_found_even_when_its_rollup_runs_long_after(alice_org):
    record(alice_org, at=MONDAY)
    post(after_hours(1))
    record(alice_org, at=MONDAY + timedelta(minutes=1))
    ledger_post_closed_hours(now=after_hours(5), lag=LAG)  # the late event is not rolled up yet

    post(after_hours(9))  # its rollup lands, the next posting sees the bucket change

    assert ledger_usage_totals(alice_org) == event_totals(alice_org)


def test_range_rebuild_posts_a_correcting_adjustment_and_never_edits_history(alice_org):
    record(alice_org, at=MONDAY, prompt=10_000)
    post(after_hours(1))
    original = entries()[0]
    # A bad entry got into the ledger somehow (an old bug): the rebuild must cancel it out.
    LedgerEntry.objects.create(
        org=alice_org,
        billing_period=original.billing_period,
        kind="adjustment",
        amount=777,
        requests=2,
        usage_hour=MONDAY,
        idempotency_key="bogus",
        source="test",
        created_at=after_hours(1),
    )

    summary = ledger_post_range(
        org_id=alice_org.pk, start=MONDAY, end=MONDAY + timedelta(days=7), now=after_hours(2)
    )

    assert summary.adjustments == 1
    fix = entries()[-1]
    assert (fix.amount, fix.requests) == (-777, -2)
    assert fix.idempotency_key == f"usage-adjustment:{alice_org.pk}:2026-03-02T00:00Z:2"
    assert LedgerEntry.objects.get(pk=original.pk).amount == original.amount
    assert ledger_usage_totals(alice_org) == event_totals(alice_org)


def test_a_crash_between_two_orgs_postings_is_finished_by_the_next_run(
    alice_org, bob_org, monkeypatch
):
    record(alice_org, at=MONDAY)
    record(bob_org, at=MONDAY + timedelta(hours=1))
    usage_rollup_pending(now=after_hours(2))
    real_book = ledger._book
    calls = []

    def crash_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real_book(*args, **kwargs)

    monkeypatch.setattr(ledger, "_book", crash_second)
    with pytest.raises(RuntimeError):
        ledger_post_closed_hours(now=after_hours(2), lag=LAG)
    assert len(entries()) == 1

    monkeypatch.undo()
    ledger_post_closed_hours(now=after_hours(2), lag=LAG)

    assert len(entries()) == 2
    assert ledger_usage_totals() == event_totals()


def test_entries_are_booked_into_the_billing_period_holding_their_hour(alice_org):
    record(alice_org, at=MONDAY + timedelta(hours=3))
    post(after_hours(4))

    entry = entries()[0]
    assert (entry.billing_period.start, entry.billing_period.end) == (
        MONDAY,
        MONDAY + timedelta(days=7),
    )
    assert entry.billing_period.status == "open"
    assert entry.billing_period.org_id == alice_org.pk


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_workers_posting_at_once_make_each_entry_once(alice_org, bob_org):
    for hour in range(6):
        record(alice_org, at=MONDAY + timedelta(hours=hour))
        record(bob_org, at=MONDAY + timedelta(hours=hour, minutes=30))
    usage_rollup_pending(now=after_hours(6))

    def post_day():
        return ledger_post_range(
            org_id=None, start=MONDAY, end=MONDAY + timedelta(days=1), now=after_hours(6)
        )

    results = run_concurrently(post_day, post_day, post_day, post_day)

    assert sum(r.usage_entries for r in results) == 12
    assert LedgerEntry.objects.count() == 12
    assert ledger_usage_totals() == event_totals()


# --- credits and integers ----------------------------------------------------------------------------


def test_a_credit_is_negative_idempotent_and_audited(alice_org):
    now = MONDAY
    credit = {
        "kind": "credit",
        "amount": -5_000_000,
        "idempotency_key": "promo:1",
        "memo": "welcome",
    }
    entry, created = ledger_post_manual(org=alice_org, actor=None, now=now, **credit)
    again, created_again = ledger_post_manual(org=alice_org, actor=None, now=now, **credit)

    assert (created, created_again, again.pk) == (True, False, entry.pk)
    assert entry.amount == -5_000_000 and entry.usage_hour is None
    assert ledger_usage_totals(alice_org) == (0, 0, 0, 0)  # credits are not usage

    from accounts.models import AuditEvent

    assert AuditEvent.objects.filter(action="ledger.credit", target_id=str(entry.pk)).exists()


def test_a_positive_credit_or_a_float_amount_is_refused(alice_org):
    with pytest.raises(ValueError):
        ledger_post_manual(
            org=alice_org,
            kind="credit",
            amount=10,
            idempotency_key="x",
            memo="",
            actor=None,
            now=MONDAY,
        )
    with pytest.raises(TypeError):
        ledger_post_manual(
            org=alice_org,
            kind="adjustment",
            amount=1.5,
            idempotency_key="y",
            memo="",
            actor=None,
            now=MONDAY,
        )
    assert not LedgerEntry.objects.exists()


def test_the_database_refuses_a_negative_usage_entry(alice_org):
    period = BillingPeriod.objects.create(
        org=alice_org, start=MONDAY, end=MONDAY + timedelta(days=7), opened_at=MONDAY
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            org=alice_org,
            billing_period=period,
            kind="usage",
            amount=-1,
            idempotency_key="neg",
            source="test",
            created_at=MONDAY,
        )


@pytest.mark.parametrize("value", [1.0, 0.5, True, None, "3"])
def test_only_ints_pass_the_money_guard(value):
    with pytest.raises(TypeError):
        require_int(value, "amount")


def test_pricing_is_exact_integer_arithmetic_rounded_up_per_request():
    # 10^12 tokens at 999_999 micro-USD per Mtok: a float would lose the last digits.
    assert (
        price_micro_usd(
            prompt_tokens=10**12 + 1, completion_tokens=0, input_per_mtok=999_999, output_per_mtok=0
        )
        == (10**12 + 1) * 999_999 // 10**6 + 1
    )
    assert (
        price_micro_usd(prompt_tokens=1, completion_tokens=1, input_per_mtok=1, output_per_mtok=1)
        == 1
    )
    assert (
        price_micro_usd(prompt_tokens=0, completion_tokens=0, input_per_mtok=5, output_per_mtok=5)
        == 0
    )
    with pytest.raises(TypeError):
        price_micro_usd(
            prompt_tokens=10, completion_tokens=0, input_per_mtok=0.1, output_per_mtok=0
        )


def test_every_stored_amount_is_an_int(alice_org):
    for minute in range(0, 120, 9):
        record(
            alice_org,
            at=MONDAY + timedelta(minutes=minute),
            prompt=minute * 37,
            input_per_mtok=333_333,
        )
    post(after_hours(2))

    from metering.models import UsageEvent, UsageRollup

    stored = [
        *UsageEvent.objects.values_list("cost", flat=True),
        *UsageRollup.objects.values_list("cost", flat=True),
        *LedgerEntry.objects.values_list("amount", flat=True),
    ]
    assert stored and all(type(value) is int for value in stored)
