"""An allowance period edited on the subscription's admin page is audited with before and
after and bumps the org's generation (the gateway applies it on the next request); a period
that ends before it starts is refused and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from accounts.invalidation import read_generations
from accounts.models import AuditEvent, PlanSubscription

pytestmark = pytest.mark.django_db


def period_form(start, end, reason: str = "") -> dict:
    return {
        "current_period_start_0": start.strftime("%Y-%m-%d"),
        "current_period_start_1": start.strftime("%H:%M:%S"),
        "current_period_end_0": end.strftime("%Y-%m-%d"),
        "current_period_end_1": end.strftime("%H:%M:%S"),
        "reason": reason,
    }


def test_a_period_edit_is_audited_and_applied(
    staff_client, alice_org, django_capture_on_commit_callbacks
):
    sub = alice_org.subscriptions.get()
    start, end = sub.current_period_start, sub.current_period_end
    url = reverse("admin:accounts_plansubscription_change", args=[sub.pk])
    generation = read_generations(org_id=alice_org.pk, plan_id=sub.plan_id)[0]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url, period_form(start, end + timedelta(days=1), reason="billing moved")
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert PlanSubscription.objects.get(pk=sub.pk).current_period_end == end + timedelta(days=1)
    assert read_generations(org_id=alice_org.pk, plan_id=sub.plan_id)[0] != generation
    (row,) = AuditEvent.objects.all()
    assert (row.action, row.actor_label, row.reason, row.org) == (
        "subscription.update",
        "ops-staff",
        "billing moved",
        alice_org,
    )
    assert row.before["current_period_end"] == end.isoformat()
    assert row.after["current_period_end"] == (end + timedelta(days=1)).isoformat()
    assert row.before["current_period_start"] == row.after["current_period_start"]

    # Saved unchanged: no row.
    assert staff_client.post(url, period_form(start, end + timedelta(days=1))).status_code == 302
    assert AuditEvent.objects.count() == 1


def test_a_period_ending_before_it_starts_is_refused(staff_client, alice_org):
    sub = alice_org.subscriptions.get()
    url = reverse("admin:accounts_plansubscription_change", args=[sub.pk])

    response = staff_client.post(
        url, period_form(sub.current_period_start, sub.current_period_start)
    )

    assert response.status_code == 200
    assert "The period must end after it starts." in response.content.decode()
    assert PlanSubscription.objects.get(pk=sub.pk).current_period_end == sub.current_period_end
    assert not AuditEvent.objects.exists()
