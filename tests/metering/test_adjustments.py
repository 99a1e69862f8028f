"""Credits and adjustments staff post (`manage.py post_adjustment`, metering.adjustments):
integer micro-USD, idempotent, audited, and visible in /ledger and the billing period."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, PlanSubscription
from metering.adjustments import AdjustmentError, adjustment_post
from metering.closing import billing_periods_close_due
from metering.ledger import ledger_post_closed_hours
from metering.models import BillingPeriod, LedgerEntry
from metering.rollups import usage_rollup_pending
from tests.factories.metering import MONDAY, event_totals, record

LAG = timedelta(minutes=15)


def post(*args) -> str:
    out = io.StringIO()
    call_command("post_adjustment", *args, stdout=out)
    return out.getvalue()


def audit_rows():
    return AuditEvent.objects.filter(target_type="ledger_entry")


# --- manage.py post_adjustment --------------------------------------------------------------------


def test_a_credit_is_posted_negative_in_the_open_period_and_audited(alice_org):
    out = post("--org", alice_org.slug, "--amount", "5000000", "--reason", "Outage on March 1")

    entry = LedgerEntry.objects.get(org=alice_org)
    assert (entry.kind, entry.amount, entry.memo, entry.usage_hour) == (
        "credit",
        -5_000_000,
        "Outage on March 1",
        None,
    )
    assert entry.billing_period.status == "open"
    assert entry.billing_period.start <= entry.created_at < entry.billing_period.end
    assert entry.idempotency_key.startswith(f"manual:{alice_org.pk}:auto:credit:5000000:")
    assert "Posted a credit of -5.000000 USD (-5000000 micro-USD)" in out
    (audit,) = audit_rows()
    assert (audit.action, audit.actor_type, audit.org_id, audit.target_id, audit.reason) == (
        "ledger.credit",
        "system",
        alice_org.pk,
        str(entry.pk),
        "Outage on March 1",
    )
    assert audit.after["amount"] == -5_000_000
    assert audit.after["via"] == "manage.py post_adjustment" and audit.after["os_user"]


def test_the_same_idempotency_key_posts_once(alice_org):
    args = ["--org", str(alice_org.pk), "--amount", "250000", "--reason", "goodwill"]

    post(*args, "--idempotency-key", "TICKET-42")
    again = post(*args, "--idempotency-key", "TICKET-42")

    assert LedgerEntry.objects.filter(org=alice_org).count() == 1
    assert audit_rows().count() == 1
    assert "Already posted" in again and "nothing posted again" in again


def test_an_accidental_rerun_without_a_key_posts_once_and_another_key_posts_again(alice_org):
    args = ["--org", alice_org.slug, "--amount", "250000", "--reason", "goodwill"]

    post(*args)
    post(*args)
    assert LedgerEntry.objects.filter(org=alice_org).count() == 1

    post(*args, "--idempotency-key", "second-goodwill")
    post(*args, "--reason", "goodwill, for the other outage")
    assert LedgerEntry.objects.filter(org=alice_org).count() == 3


def test_keys_are_per_organization(alice_org, bob_org):
    post("--org", alice_org.slug, "--amount", "1", "--reason", "r", "--idempotency-key", "k")
    post("--org", bob_org.slug, "--amount", "1", "--reason", "r", "--idempotency-key", "k")

    assert LedgerEntry.objects.count() == 2


def test_an_adjustment_is_signed(alice_org):
    post("--org", alice_org.slug, "--kind", "adjustment", "--amount=-1_200", "--reason", "r")
    post("--org", alice_org.slug, "--kind", "adjustment", "--amount", "-300", "--reason", "r2")
    post("--org", alice_org.slug, "--kind", "adjustment", "--amount", "700", "--reason", "r3")

    assert sorted(LedgerEntry.objects.values_list("kind", "amount")) == [
        ("adjustment", -1200),
        ("adjustment", -300),
        ("adjustment", 700),
    ]
    assert set(audit_rows().values_list("action", flat=True)) == {"ledger.adjustment"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "no-such-org"], "--org: no organization with id or slug 'no-such-org'"),
        (["--org", "00000000-0000-0000-0000-000000000001"], "--org: no organization"),
        (["--amount", "0"], "--amount: amount must not be zero"),
        (["--amount", "1.5"], "--amount: amount must be a whole number of micro-USD"),
        (["--amount", "1e6"], "--amount: amount must be a whole number of micro-USD"),
        (["--amount", "five"], "--amount: amount must be a whole number of micro-USD"),
        (["--amount", "-100"], "--amount: a credit's amount is what the organization gets back"),
        (["--amount", "1000000000001"], "--amount: amount is over"),
        (["--reason", "   "], "--reason: a reason is required"),
        (["--reason", "x" * 256], "--reason: the reason is at most 255 characters"),
        (["--idempotency-key", "has spaces"], "--idempotency-key: the idempotency key is at most"),
    ],
)
def test_bad_input_is_a_clear_error_and_posts_nothing(alice_org, args, message):
    defaults = {"--org": alice_org.slug, "--amount": "100", "--reason": "why"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [part for pair in {**defaults, **given}.items() for part in pair]

    with pytest.raises(CommandError) as caught:
        post(*argv)

    assert str(caught.value).startswith(message), str(caught.value)
    assert str(caught.value).endswith("nothing posted")
    assert not LedgerEntry.objects.exists()
    assert not audit_rows().exists()


def test_a_key_reused_for_a_different_posting_is_refused(alice_org):
    post("--org", alice_org.slug, "--amount", "100", "--reason", "r", "--idempotency-key", "k1")

    with pytest.raises(CommandError, match="already used for entry #"):
        post("--org", alice_org.slug, "--amount", "999", "--reason", "r", "--idempotency-key", "k1")

    assert list(LedgerEntry.objects.values_list("amount", flat=True)) == [-100]


def test_an_unknown_kind_is_refused_by_the_parser(alice_org):
    with pytest.raises(CommandError, match="invalid choice"):
        post("--org", alice_org.slug, "--amount", "1", "--reason", "r", "--kind", "refund")


def test_the_service_refuses_floats(alice_org):
    with pytest.raises(AdjustmentError, match="integer"):
        adjustment_post(
            org=alice_org, kind="credit", amount=1.0, reason="r", actor=None, now=MONDAY
        )

    assert not LedgerEntry.objects.exists()


# --- what the organization sees ------------------------------------------------------------------


@pytest.fixture
def week(alice_org):
    """alice's allowance period pinned to the week of MONDAY, with 1000 prompt tokens used."""
    sub = PlanSubscription.objects.get(org=alice_org, status="active")
    sub.current_period_start, sub.current_period_end = MONDAY, MONDAY + timedelta(days=7)
    sub.save()
    record(alice_org, at=MONDAY, prompt=1000)
    usage_rollup_pending(now=MONDAY + timedelta(hours=2))
    ledger_post_closed_hours(now=MONDAY + timedelta(hours=2), lag=LAG)
    return event_totals(alice_org)[3]


def credit_and_adjust(org):
    at = MONDAY + timedelta(hours=3)
    adjustment_post(
        org=org, kind="credit", amount=40, reason="sorry", actor=None, now=at, idempotency_key="c"
    )
    adjustment_post(
        org=org, kind="adjustment", amount=15, reason="fee", actor=None, now=at, idempotency_key="a"
    )


def periods(api, user, org):
    response = api.as_user(user).get(f"/api/v1/orgs/{org.pk}/billing-periods")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_credits_show_in_the_ledger_labelled_by_kind(api, alice, alice_org, week):
    credit_and_adjust(alice_org)

    url = f"/api/v1/orgs/{alice_org.pk}/ledger"
    body = api.as_user(alice).get(url).json()
    credits = api.as_user(alice).get(url, {"kind": "credit"}).json()

    assert [(e["kind"], e["amount"], e["memo"]) for e in body["results"]] == [
        ("adjustment", 15, "fee"),
        ("credit", -40, "sorry"),
        ("usage", week, "scheduled posting"),
    ]
    assert [(e["kind"], e["amount_usd"]) for e in credits["results"]] == [("credit", "-0.000040")]
    assert body["results"][1]["source"] == "manual"
    bad = api.as_user(alice).get(url, {"kind": "refund"})
    assert bad.status_code == 400


def test_credits_reduce_what_is_owed_in_the_open_period(api, alice, alice_org, week):
    credit_and_adjust(alice_org)

    (period,) = periods(api, alice, alice_org)

    assert period["status"] == "open"
    assert (period["cost"], period["credits"], period["adjustments"]) == (week, -40, 15)
    assert period["balance"] == week - 40 + 15
    assert (period["credits_usd"], period["adjustments_usd"]) == ("-0.000040", "0.000015")


def test_a_closed_period_keeps_its_credits(api, alice, alice_org, week):
    credit_and_adjust(alice_org)

    billing_periods_close_due(now=MONDAY + timedelta(days=7) + LAG, lag=LAG)

    closed = next(p for p in periods(api, alice, alice_org) if p["status"] == "closed")
    assert (closed["cost"], closed["credits"], closed["adjustments"], closed["balance"]) == (
        week,
        -40,
        15,
        week - 25,
    )
    assert BillingPeriod.objects.get(pk=closed["id"]).balance == week - 25
