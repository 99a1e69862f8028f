"""Metering in the admin: the audited "Post a credit or adjustment" control, and the request
log filtered by key, model, status and time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from metering.models import LedgerEntry
from tests.factories.metering import MONDAY, record

FORM = reverse("admin:metering_ledgerentry_post_adjustment")


def form_data(target, **changes) -> dict:
    return {
        "org": target.slug,
        "kind": "credit",
        "amount": "2500000",
        "reason": "Credit for the outage of March 1",
        "idempotency_key": "admin-test-1",
        **changes,
    }


def errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    form = response.context["form"]
    return {name: " ".join(messages) for name, messages in form.errors.items()}


# --- post a credit or adjustment ----------------------------------------------------------------------


def test_the_form_is_linked_from_the_ledger_and_the_billing_periods(staff_client, alice_org):
    record(alice_org, at=MONDAY)
    staff_client.post(FORM, form_data(alice_org))  # opens a billing period

    ledger = staff_client.get(reverse("admin:metering_ledgerentry_changelist"))
    periods = staff_client.get(reverse("admin:metering_billingperiod_changelist"))
    page = staff_client.get(FORM, {"org": str(alice_org.pk)})

    assert FORM.encode() in ledger.content and b"Post a credit or adjustment" in ledger.content
    assert f"{FORM}?org={alice_org.pk}".encode() in periods.content
    assert page.status_code == 200
    form = page.context["form"]
    assert form["org"].value() == str(alice_org.pk)
    assert form["idempotency_key"].value().startswith("admin-")
    assert (
        staff_client.get(FORM).context["form"]["idempotency_key"].value()
        != form["idempotency_key"].value()
    )


def test_posting_a_credit_books_it_audits_it_and_shows_the_entry(
    staff_client, staff_user, alice_org
):
    response = staff_client.post(FORM, form_data(alice_org), follow=True)

    entry = LedgerEntry.objects.get(org=alice_org)
    assert response.redirect_chain[-1][0] == reverse(
        "admin:metering_ledgerentry_change", args=[entry.pk]
    )
    assert (entry.kind, entry.amount, entry.memo, entry.source) == (
        "credit",
        -2_500_000,
        "Credit for the outage of March 1",
        "manual: admin",
    )
    assert entry.idempotency_key == f"manual:{alice_org.pk}:admin-test-1"
    assert b"Posted a credit of -2.500000 USD" in response.content
    (audit,) = AuditEvent.objects.filter(target_type="ledger_entry")
    assert (audit.action, audit.actor_type, audit.actor_label, audit.org_id) == (
        "ledger.credit",
        "staff",
        staff_user.get_username(),
        alice_org.pk,
    )
    assert (audit.reason, audit.after["via"], audit.after["amount"]) == (
        "Credit for the outage of March 1",
        "admin",
        -2_500_000,
    )


def test_submitting_the_same_form_twice_posts_once(staff_client, alice_org):
    staff_client.post(FORM, form_data(alice_org))
    again = staff_client.post(FORM, form_data(alice_org), follow=True)

    assert LedgerEntry.objects.filter(org=alice_org).count() == 1
    assert AuditEvent.objects.filter(target_type="ledger_entry").count() == 1
    assert b"Already posted" in again.content


def test_an_adjustment_is_signed(staff_client, alice_org):
    staff_client.post(FORM, form_data(alice_org, kind="adjustment", amount="-700"))

    entry = LedgerEntry.objects.get(org=alice_org)
    assert (entry.kind, entry.amount) == ("adjustment", -700)
    assert AuditEvent.objects.get(target_type="ledger_entry").action == "ledger.adjustment"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"org": "nobody"}, "org", "no organization with id or slug 'nobody'"),
        ({"amount": "0"}, "amount", "amount must not be zero"),
        ({"amount": "2.5"}, "amount", "whole number of micro-USD"),
        ({"amount": "-5"}, "amount", "give it as a positive number"),
        ({"reason": "  "}, "reason", "required"),
        ({"kind": "refund"}, "kind", "Select a valid choice"),
        ({"idempotency_key": "with spaces"}, "idempotency_key", "letters, digits"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_posts_nothing(
    staff_client, alice_org, changes, field, message
):
    response = staff_client.post(FORM, form_data(alice_org, **changes))
    found = errors(response)

    assert message in found.get(field, ""), found
    assert response.context["form"][field].value() == form_data(alice_org, **changes)[field]
    assert not LedgerEntry.objects.exists()
    assert not AuditEvent.objects.filter(target_type="ledger_entry").exists()


def test_a_form_resubmitted_with_another_amount_is_refused_and_gets_a_fresh_key(
    staff_client, alice_org
):
    staff_client.post(FORM, form_data(alice_org))

    response = staff_client.post(FORM, form_data(alice_org, amount="9000000"))

    assert "already used for entry #" in errors(response)["idempotency_key"]
    assert response.context["form"]["idempotency_key"].value() != "admin-test-1"
    assert list(LedgerEntry.objects.values_list("amount", flat=True)) == [-2_500_000]


def test_staff_without_the_ledger_permission_are_refused(alice_org):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_ledgerentry"))
    client = Client()
    client.force_login(user)

    assert client.get(FORM).status_code == 403
    assert client.post(FORM, form_data(alice_org)).status_code == 403
    ledger = client.get(reverse("admin:metering_ledgerentry_changelist"))
    assert ledger.status_code == 200 and FORM.encode() not in ledger.content
    assert not LedgerEntry.objects.exists()


def test_the_billing_period_page_shows_credits_and_adjustments(staff_client, alice_org):
    staff_client.post(FORM, form_data(alice_org))
    period_id = LedgerEntry.objects.get().billing_period_id

    page = staff_client.get(reverse("admin:metering_billingperiod_change", args=[period_id]))

    assert page.status_code == 200
    assert b"Credits (micro-USD)" in page.content and b"-2500000" in page.content


# --- the request log's filters ----------------------------------------------------------------------


@pytest.fixture
def logs(alice_org, bob_org, alice_key, alice_key2, bob_key):
    return {
        "a": record(alice_org, key=alice_key, at=MONDAY),
        "b": record(alice_org, key=alice_key2, at=MONDAY + timedelta(hours=1), model="qwen-3-32b"),
        "c": record(
            alice_org,
            key=alice_key,
            at=MONDAY + timedelta(days=1),
            status=429,
            prompt=0,
            completion=0,
        ),
        "d": record(
            bob_org, key=bob_key, at=MONDAY + timedelta(days=2), status=502, prompt=0, completion=0
        ),
    }


def listed(staff_client, **params) -> set[str]:
    response = staff_client.get(reverse("admin:metering_requestlog_changelist"), params)
    assert response.status_code == 200, response.status_code
    return {log.request_id for log in response.context["cl"].result_list}


def test_the_request_log_filters_by_key_model_status_and_time(
    staff_client, logs, alice_key, alice_key2
):
    assert listed(staff_client) == set(logs.values())
    assert listed(staff_client, key=str(alice_key2.pk)) == {logs["b"]}
    assert listed(staff_client, key=alice_key.prefix) >= {logs["a"], logs["c"]}
    assert logs["b"] not in listed(staff_client, key=alice_key.prefix)
    assert listed(staff_client, key="ctr_no_such_prefix") == set()
    assert listed(staff_client, model="qwen-3-32b") == {logs["b"]}
    assert listed(staff_client, status="429") == {logs["c"]}
    assert listed(staff_client, status="5xx") == {logs["d"]}
    assert listed(staff_client, status="2xx") == {logs["a"], logs["b"]}
    assert listed(
        staff_client,
        created_at__gte="2026-03-02 00:00:00+00:00",
        created_at__lt="2026-03-03 00:00:00+00:00",
    ) == {logs["a"], logs["b"]}
    assert listed(
        staff_client, created_at__year="2026", created_at__month="3", created_at__day="3"
    ) == {logs["c"]}
    assert listed(staff_client, key=str(alice_key.pk), status="4xx") == {logs["c"]}


def test_the_typed_in_filters_keep_the_other_filters(staff_client, logs, alice_key):
    response = staff_client.get(
        reverse("admin:metering_requestlog_changelist"), {"status": "4xx", "q": "alice"}
    )

    html = response.content.decode()
    assert 'name="key"' in html and 'placeholder="key id or prefix"' in html
    assert '<input type="hidden" name="status" value="4xx">' in html
    assert '<input type="hidden" name="q" value="alice">' in html
