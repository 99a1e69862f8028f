"""The plan admin beyond plain edits (those are test_privileges.py): a plan deleted (from its
page or with "Delete selected") is audited with what it was, its model list included, and
its generation bumped; a plan organizations are on cannot be deleted, and nothing is
written; a model access policy naming an alias is refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.invalidation import read_generations
from accounts.models import AuditEvent, ModelAccessPolicy, Plan
from pools import services as pool_services
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


def test_a_model_access_policy_naming_an_alias_is_refused(staff_client):
    pool_services.model_create(name="real-model", display_name="Real", aliases=["nickname"])
    plan = make_plan("aliased")
    form = {
        name: str(getattr(plan, name))
        for name in [
            "code",
            "name",
            "requests_per_minute",
            "tokens_per_minute",
            "concurrent_requests",
            "window_requests",
            "window_seconds",
            "weekly_requests",
            "weekly_tokens",
            "max_active_keys",
        ]
    }
    form.update(
        {
            "model_policies-TOTAL_FORMS": "2",
            "model_policies-INITIAL_FORMS": "0",
            "model_policies-0-plan": str(plan.pk),
            "model_policies-0-model_name": "nickname",
            "model_policies-1-plan": str(plan.pk),
            "model_policies-1-model_name": "not-added-yet",
        }
    )
    url = reverse("admin:accounts_plan_change", args=[plan.pk])

    response = staff_client.post(url, form)

    assert response.status_code == 200
    assert "nickname is an alias of real-model: name real-model." in response.content.decode()
    assert not ModelAccessPolicy.objects.exists() and not AuditEvent.objects.exists()

    form["model_policies-0-model_name"] = "real-model"  # a model added later is fine too
    assert staff_client.post(url, form).status_code == 302
    assert sorted(plan.model_policies.values_list("model_name", flat=True)) == [
        "not-added-yet",
        "real-model",
    ]
