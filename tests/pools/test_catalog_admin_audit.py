"""Plain admin edits of the catalog are audited: an alias added, changed and deleted (alone,
on its model's page, in bulk), a model's price changed, a route added inline, a router's key
replaced (never logged). Each row has the staff user, the reason given, and the fields that
changed before and after; a save that changes nothing writes nothing. (That each edit bumps
the catalog version is tests/ops/test_catalog_admin.py.)"""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from pools import services as pool_services
from pools.models import Model, ModelAlias, Route, Router

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    return pool_services.model_create(
        name="audit-model", display_name="Audit Model", input_price_per_mtok=100
    )


def rows(**filters) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(**filters)
        .order_by("id")
        .values_list("actor_label", "action", "target_id", "reason", "before", "after")
    )


def ok(response):
    assert response.status_code == 302, response.content.decode()[:3000]
    return response


def model_form(model: Model, **changes) -> dict:
    form = {
        "name": model.name,
        "display_name": model.display_name,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "input_price_per_mtok": model.input_price_per_mtok,
        "output_price_per_mtok": model.output_price_per_mtok,
        "reason": "",
        "aliases-TOTAL_FORMS": "0",
        "aliases-INITIAL_FORMS": "0",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
    }
    form.update(changes)
    return form


def test_an_alias_added_renamed_and_deleted_alone(staff_client, model):
    other = pool_services.model_create(name="other-model", display_name="Other")
    ok(
        staff_client.post(
            reverse("admin:pools_modelalias_add"),
            {"alias": "latest", "model": model.pk, "reason": "launch"},
        )
    )
    alias = ModelAlias.objects.get(alias="latest")
    ok(
        staff_client.post(
            reverse("admin:pools_modelalias_change", args=[alias.pk]),
            {"alias": "latest", "model": other.pk, "reason": "new default"},
        )
    )
    ok(
        staff_client.post(
            reverse("admin:pools_modelalias_delete", args=[alias.pk]), {"post": "yes"}
        )
    )

    assert rows(target_type="model_alias") == [
        (
            "ops-staff",
            "model_alias.create",
            str(alias.pk),
            "launch",
            None,
            {"id": alias.pk, "alias": "latest", "model": "audit-model"},
        ),
        (
            "ops-staff",
            "model_alias.update",
            str(alias.pk),
            "new default",
            {"model": "audit-model"},
            {"model": "other-model"},
        ),
        (
            "ops-staff",
            "model_alias.delete",
            str(alias.pk),
            "",
            {"id": alias.pk, "alias": "latest", "model": "other-model"},
            None,
        ),
    ]


def test_aliases_deleted_in_bulk_each_get_a_row(staff_client, model):
    aliases = [ModelAlias.objects.create(alias=name, model=model) for name in ["a-one", "a-two"]]
    ok(
        staff_client.post(
            reverse("admin:pools_modelalias_changelist"),
            {
                "action": "delete_selected",
                "_selected_action": [a.pk for a in aliases],
                "post": "yes",
            },
        )
    )
    assert not ModelAlias.objects.exists()
    assert sorted((r[1], r[4]["alias"]) for r in rows(target_type="model_alias")) == [
        ("model_alias.delete", "a-one"),
        ("model_alias.delete", "a-two"),
    ]


def test_aliases_and_prices_edited_on_the_models_page(staff_client, model):
    kept = ModelAlias.objects.create(alias="kept", model=model)
    dropped = ModelAlias.objects.create(alias="dropped", model=model)
    url = reverse("admin:pools_model_change", args=[model.pk])
    form = model_form(
        model,
        input_price_per_mtok="250",
        reason="price list 2026-12",
        **{
            "aliases-TOTAL_FORMS": "3",
            "aliases-INITIAL_FORMS": "2",
            "aliases-0-id": kept.pk,
            "aliases-0-model": model.pk,
            "aliases-0-alias": "kept-renamed",
            "aliases-1-id": dropped.pk,
            "aliases-1-model": model.pk,
            "aliases-1-alias": "dropped",
            "aliases-1-DELETE": "on",
            "aliases-2-model": model.pk,
            "aliases-2-alias": "added",
        },
    )
    ok(staff_client.post(url, form))

    added = ModelAlias.objects.get(alias="added")
    assert rows() == [
        (
            "ops-staff",
            "model.update",
            "audit-model",
            "price list 2026-12",
            {"input_price_per_mtok": 100},
            {"input_price_per_mtok": 250},
        ),
        (
            "ops-staff",
            "model_alias.create",
            str(added.pk),
            "price list 2026-12",
            None,
            {"id": added.pk, "alias": "added", "model": "audit-model"},
        ),
        (
            "ops-staff",
            "model_alias.update",
            str(kept.pk),
            "price list 2026-12",
            {"alias": "kept"},
            {"alias": "kept-renamed"},
        ),
        (
            "ops-staff",
            "model_alias.delete",
            str(dropped.pk),
            "price list 2026-12",
            {"id": dropped.pk, "alias": "dropped", "model": "audit-model"},
            None,
        ),
    ]

    # Saved again unchanged: no row.
    model.refresh_from_db()
    again = model_form(
        model,
        **{
            "aliases-TOTAL_FORMS": "2",
            "aliases-INITIAL_FORMS": "2",
            "aliases-0-id": added.pk,
            "aliases-0-model": model.pk,
            "aliases-0-alias": "added",
            "aliases-1-id": kept.pk,
            "aliases-1-model": model.pk,
            "aliases-1-alias": "kept-renamed",
        },
    )
    ok(staff_client.post(url, again))
    assert len(rows()) == 4


def test_a_route_added_on_the_models_page(staff_client, model):
    pool = pool_services.pool_create(name="audit-pool")
    form = model_form(
        model,
        **{
            "routes-TOTAL_FORMS": "1",
            "routes-0-model": model.pk,
            "routes-0-pool": pool.pk,
            "routes-0-session_id": "9",
            "routes-0-api_style": "cortensor",
            "routes-0-prompt_template": "chatml",
            "routes-0-priority": "100",
        },
    )
    ok(staff_client.post(reverse("admin:pools_model_change", args=[model.pk]), form))
    route = Route.objects.get()
    ((action, after),) = [(r[1], r[5]) for r in rows(target_type="route")]
    assert action == "route.create"
    assert after == {
        "id": route.pk,
        "model": "audit-model",
        "pool": "audit-pool",
        "session_id": 9,
        "session_in_path": False,
        "prompt_template": "chatml",
        "api_style": "cortensor",
        "priority": 100,
    }


def test_a_routers_new_key_is_noted_never_logged(staff_client):
    pool = pool_services.pool_create(name="keyed-pool")
    router = pool_services.router_create(
        pool=pool, name="r1", base_url="http://router-a:9101", api_key="old-secret-key"
    )
    form = {
        "pool": pool.pk,
        "name": "r1",
        "base_url": "http://router-b:9101",
        "weight": "3",
        "new_api_key": "new-secret-key",
        "reason": "moved host",
    }
    ok(staff_client.post(reverse("admin:pools_router_change", args=[router.pk]), form))

    ((action, target, reason, before, after),) = [r[1:] for r in rows(target_type="router")]
    assert (action, target, reason) == ("router.update", str(router.pk), "moved host")
    assert before == {"base_url": "http://router-a:9101", "weight": 1, "api_key": None}
    assert after == {"base_url": "http://router-b:9101", "weight": 3, "api_key": "replaced"}
    sealed = Router.objects.get(pk=router.pk).api_key_sealed
    logged = str(list(AuditEvent.objects.values_list("before", "after")))
    assert "secret-key" not in logged and sealed not in logged


def test_an_alias_cannot_shadow_a_model_nor_a_model_an_alias(staff_client, model):
    other = pool_services.model_create(name="other-model", display_name="Other")
    ModelAlias.objects.create(alias="taken-alias", model=other)

    alone = staff_client.post(
        reverse("admin:pools_modelalias_add"), {"alias": "other-model", "model": model.pk}
    )
    assert alone.status_code == 200
    assert "A model is named other-model: pick another alias." in alone.content.decode()
    inline = staff_client.post(
        reverse("admin:pools_model_change", args=[model.pk]),
        model_form(
            model,
            **{
                "aliases-TOTAL_FORMS": "1",
                "aliases-0-model": model.pk,
                "aliases-0-alias": "other-model",
            },
        ),
    )
    assert "A model is named other-model" in inline.content.decode()
    renamed = staff_client.post(
        reverse("admin:pools_model_change", args=[model.pk]), model_form(model, name="taken-alias")
    )
    assert "taken-alias is already an alias: pick another name." in renamed.content.decode()
    assert list(ModelAlias.objects.values_list("alias", flat=True)) == ["taken-alias"]
    assert Model.objects.get(pk=model.pk).name == "audit-model"
    assert not AuditEvent.objects.exists()
