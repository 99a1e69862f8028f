"""Plan limits, a plan's model access policies and model aliases, edited in the admin of this
process, are seen by a gateway process on its very next request: the server runs with hour-
long cache lifetimes, so only the generation tokens and the catalog version (bumped when the
edit commits) can make the change visible. Every edit is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Plan
from pools.models import ModelAlias
from tests.factories import seeding
from tests.support import live

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NO_CACHE_EXPIRY = {"AUTH_CONTEXT_TTL_SECONDS": "3600", "CATALOG_MAX_AGE_SECONDS": "3600"}


def plan_form(plan: Plan, *, models: list[tuple[int | None, str, bool]] = (), **changes) -> dict:
    """The plan's change form as saved unchanged, with `changes` and its model list as
    (policy id or None for a new row, model name, delete)."""
    form = {}
    for field in Plan._meta.concrete_fields:
        if not field.editable or field.name in {"id", "created_at", "updated_at"}:
            continue
        value = getattr(plan, field.attname)
        if isinstance(value, bool):
            if value:
                form[field.name] = "on"
        else:
            form[field.name] = str(value)
    for name, value in changes.items():
        if value is False:
            form.pop(name, None)
        else:
            form[name] = "on" if value is True else str(value)
    form["model_policies-TOTAL_FORMS"] = str(len(models))
    form["model_policies-INITIAL_FORMS"] = str(sum(1 for pk, _, _ in models if pk))
    for i, (pk, model_name, delete) in enumerate(models):
        form[f"model_policies-{i}-plan"] = str(plan.pk)
        form[f"model_policies-{i}-model_name"] = model_name
        if pk:
            form[f"model_policies-{i}-id"] = str(pk)
        if delete:
            form[f"model_policies-{i}-DELETE"] = "on"
    return form


def save_plan(staff_client, plan: Plan, **kwargs) -> None:
    plan.refresh_from_db()
    response = staff_client.post(
        reverse("admin:accounts_plan_change", args=[plan.pk]), plan_form(plan, **kwargs)
    )
    assert response.status_code == 302, response.content.decode()[:3000]


def test_plan_limit_policy_and_alias_edits_apply_on_the_next_request(
    simulators, gateway, staff_client
):
    plan = seeding.plan("edited-live")
    stack = live.start(simulators, gateway, plan=plan, server_env=NO_CACHE_EXPIRY)
    assert stack.code() == (200, "")  # the context (plan included) and the catalog are cached

    # A plan limit: one request a minute, already used by the request above.
    save_plan(staff_client, plan, requests_per_minute=1, reason="throttle this tier")
    response = stack.chat()
    assert response.status_code == 429 and response.json()["error"]["code"] == (
        "rate_limit_exceeded"
    )
    assert response.headers["x-ratelimit-limit-requests"] == "1"

    # Model access policies, inline on the plan's page: only another model, then this one.
    save_plan(
        staff_client,
        plan,
        requests_per_minute=10_000,
        all_models=False,
        models=[(None, "other-model", False)],
        reason="trial tier",
    )
    assert stack.code() == (403, "model_not_allowed")
    policy = plan.model_policies.get()
    save_plan(staff_client, plan, models=[(policy.pk, seeding.MODEL, False)], reason="allow it")
    assert stack.code() == (200, "")

    # An alias added, then deleted with "Delete selected".
    assert stack.code(model="fresh-alias") == (404, "model_not_found")
    added = staff_client.post(
        reverse("admin:pools_modelalias_add"),
        {"alias": "fresh-alias", "model": stack.catalog.model.pk, "reason": "launch"},
    )
    assert added.status_code == 302
    assert stack.code(model="fresh-alias") == (200, "")
    alias = ModelAlias.objects.get(alias="fresh-alias")
    deleted = staff_client.post(
        reverse("admin:pools_modelalias_changelist"),
        {"action": "delete_selected", "_selected_action": [alias.pk], "post": "yes"},
    )
    assert deleted.status_code == 302
    assert stack.code(model="fresh-alias") == (404, "model_not_found")

    # The policy deleted: no model left to this plan.
    policy = plan.model_policies.get()
    save_plan(staff_client, plan, models=[(policy.pk, seeding.MODEL, True)], reason="closed")
    assert stack.code() == (403, "model_not_allowed")

    assert list(
        AuditEvent.objects.filter(actor_type="staff")
        .order_by("id")
        .values_list("action", "reason", "before", "after")
    ) == [
        (
            "plan.update",
            "throttle this tier",
            {"requests_per_minute": 10_000},
            {"requests_per_minute": 1},
        ),
        (
            "plan.update",
            "trial tier",
            {"requests_per_minute": 1, "all_models": True, "models": []},
            {"requests_per_minute": 10_000, "all_models": False, "models": ["other-model"]},
        ),
        ("plan.update", "allow it", {"models": ["other-model"]}, {"models": [seeding.MODEL]}),
        (
            "model_alias.create",
            "launch",
            None,
            {"id": alias.pk, "alias": "fresh-alias", "model": seeding.MODEL},
        ),
        (
            "model_alias.delete",
            "",
            {"id": alias.pk, "alias": "fresh-alias", "model": seeding.MODEL},
            None,
        ),
        ("plan.update", "closed", {"models": [seeding.MODEL]}, {"models": []}),
    ]
