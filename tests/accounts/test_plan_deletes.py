"""A plan deleted in the admin (from its page or with "Delete selected") is audited with what
it was, its model list included, and its generation bumped; a plan organizations are on
cannot be deleted, and nothing is written. (Plan edits: test_privileges.py.)"""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.invalidation import read_generations
from accounts.models import AuditEvent, ModelAccessPolicy, Plan
from tests.factories.accounts import plan as make_plan

pytestmark = pytest.mark.django_db


def plan_generation(plan_id) -> str:
    return read_generations(org_id="none", plan_id=plan_id)[1]


def test_a_plan_deleted_from_its_page_is_audited(staff_client, django_capture_on_commit_callbacks):
    plan = make_plan("retired", requests_per_minute=7)
    Plan.objects.filter(pk=plan.pk).update(all_models=False)
    ModelAccessPolicy.objects.create(plan=plan, model_name="model-z")
    generation = plan_generation(plan.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:accounts_plan_delete", args=[plan.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    assert not Plan.objects.filter(pk=plan.pk).exists()
    assert plan_generation(plan.pk) != generation
    (row,) = AuditEvent.objects.filter(target_type="plan")
    assert (row.action, row.actor_label, row.target_id, row.after) == (
        "plan.delete",
        "ops-staff",
        str(plan.pk),
        None,
    )
    assert row.before["code"] == "retired" and row.before["requests_per_minute"] == 7
    assert row.before["all_models"] is False and row.before["models"] == ["model-z"]


def test_plans_deleted_in_bulk_each_get_a_row(staff_client):
    plans = [make_plan("old-a"), make_plan("old-b")]
    response = staff_client.post(
        reverse("admin:accounts_plan_changelist"),
        {"action": "delete_selected", "_selected_action": [p.pk for p in plans], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted(
        (e.action, e.before["code"]) for e in AuditEvent.objects.filter(target_type="plan")
    ) == [("plan.delete", "old-a"), ("plan.delete", "old-b")]


def test_a_plan_in_use_is_not_deleted(staff_client, alice_org):
    free = alice_org.subscriptions.get().plan
    response = staff_client.post(
        reverse("admin:accounts_plan_delete", args=[free.pk]), {"post": "yes"}
    )
    assert response.status_code == 200 and "Cannot delete plan" in response.content.decode()
    assert Plan.objects.filter(pk=free.pk).exists()
    assert not AuditEvent.objects.exists()
