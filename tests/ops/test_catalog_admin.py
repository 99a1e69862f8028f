"""Plain admin edits of the catalog (add, change, delete a model, alias, route, router or
pool) reach every gateway process on the next request: each bumps the catalog version
when it commits, so no process keeps serving the old catalog until its snapshot ages out."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pools import services as pool_services
from pools.catalog import read_catalog_version
from pools.models import ModelAlias, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db):
    model = pool_services.model_create(name="bump-model", display_name="Bump Model")
    pool = pool_services.pool_create(name="bump-pool")
    route = pool_services.route_create(model=model, pool=pool, session_id=1)
    return model, pool, route


def changed_version(client, django_capture_on_commit_callbacks, post) -> bool:
    before = read_catalog_version()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client)
    assert response.status_code == 302, response.content[:500]
    return read_catalog_version() != before


def test_adding_an_alias_bumps_the_catalog(
    staff_client, catalog, django_capture_on_commit_callbacks
):
    model, _, _ = catalog
    url = reverse("admin:pools_modelalias_add")
    assert changed_version(
        staff_client,
        django_capture_on_commit_callbacks,
        lambda c: c.post(url, {"alias": "bump-alias", "model": model.pk}),
    )
    assert ModelAlias.objects.filter(alias="bump-alias", model=model).exists()


def test_deleting_an_alias_bumps_the_catalog(
    staff_client, catalog, django_capture_on_commit_callbacks
):
    model, _, _ = catalog
    alias = ModelAlias.objects.create(alias="gone-alias", model=model)
    url = reverse("admin:pools_modelalias_delete", args=[alias.pk])
    assert changed_version(
        staff_client, django_capture_on_commit_callbacks, lambda c: c.post(url, {"post": "yes"})
    )
    assert not ModelAlias.objects.filter(pk=alias.pk).exists()


def test_deleting_routes_in_bulk_bumps_the_catalog(
    staff_client, catalog, django_capture_on_commit_callbacks
):
    _, _, route = catalog
    url = reverse("admin:pools_route_changelist")
    assert changed_version(
        staff_client,
        django_capture_on_commit_callbacks,
        lambda c: c.post(
            url, {"action": "delete_selected", "_selected_action": [route.pk], "post": "yes"}
        ),
    )
    assert not Route.objects.filter(pk=route.pk).exists()


def test_changing_a_route_bumps_the_catalog(
    staff_client, catalog, django_capture_on_commit_callbacks
):
    model, pool, route = catalog
    url = reverse("admin:pools_route_change", args=[route.pk])
    form = {
        "model": model.pk,
        "pool": pool.pk,
        "session_id": 7,
        "api_style": route.api_style,
        "prompt_template": route.prompt_template,
        "priority": route.priority,
    }
    assert changed_version(
        staff_client, django_capture_on_commit_callbacks, lambda c: c.post(url, form)
    )
    route.refresh_from_db()
    assert route.session_id == 7
