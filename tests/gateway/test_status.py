"""What a client can see before it sends a request: `GET /health` tells a global pause and which
models no pool serves now; `GET /v1/models` lists only models a request could reach."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from ops import services as ops_services
from pools.services import model_set_status, pool_set_status, router_set_enabled
from tests.factories import seeding

pytestmark = pytest.mark.django_db

ROUTER = "http://127.0.0.1:9"  # never called: nothing here forwards a request


def health() -> dict:
    response = Client().get("/health")
    assert response.status_code == 200
    return response.json()


def listed_models(secret: str) -> list[str]:
    response = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["data"]]


# --- /health -----------------------------------------------------------------------------------


def test_health_says_paused_with_the_customer_message_and_ok_again_after_resume(on_commit):
    seeding.catalog(router_urls=[ROUTER])
    with on_commit():
        ops_services.access_pause(
            message="Upgrading until 14:00 UTC.", actor=None, reason="r", now=timezone.now()
        )

    paused = health()

    assert paused["status"] == "paused"
    assert paused["message"] == "Upgrading until 14:00 UTC."
    assert paused["pools"]["e2e-pool"]["status"] == "active"  # the rest of the report still answers

    with on_commit():
        ops_services.access_resume(actor=None, reason="r", now=timezone.now())

    resumed = health()
    assert resumed["status"] == "ok" and resumed["message"] is None


def test_a_pause_without_a_message_shows_the_default_one(on_commit):
    with on_commit():
        ops_services.access_pause(message="", actor=None, reason="r", now=timezone.now())

    assert health() | {"pools": None} == {
        "status": "paused",
        "message": "Access is paused.",
        "pools": None,
        "unavailable_models": [],
    }


@pytest.mark.parametrize("pool_status", ["draining", "disabled"])
def test_a_model_only_a_drained_or_disabled_pool_serves_is_unavailable(on_commit, pool_status):
    served = seeding.catalog(router_urls=[ROUTER])
    other = seeding.catalog(
        router_urls=[ROUTER], model="other-model", aliases=("other",), pool="other-pool"
    )
    with on_commit():
        pool_set_status(pool=other.pool, status=pool_status)

    report = health()

    assert report["pools"]["other-pool"] == {
        "status": pool_status,
        "models": ["other", "other-model"],
    }
    assert report["unavailable_models"] == ["other", "other-model"]

    with on_commit():
        pool_set_status(pool=served.pool, status="draining")
        pool_set_status(pool=other.pool, status="active")

    assert health()["unavailable_models"] == [seeding.ALIAS, seeding.MODEL]


def test_a_model_with_one_active_pool_left_stays_available(on_commit):
    seeding.catalog(router_urls=[ROUTER])
    second = seeding.catalog(
        router_urls=[ROUTER], pool="second-pool"
    )  # the same model, another pool
    with on_commit():
        pool_set_status(pool=second.pool, status="draining")

    report = health()

    assert report["pools"]["second-pool"]["status"] == "draining"
    assert report["unavailable_models"] == []


def test_a_model_whose_routers_are_all_disabled_is_unavailable(on_commit):
    served = seeding.catalog(router_urls=[ROUTER])
    with on_commit():
        router_set_enabled(router=served.routers[0], enabled=False)

    assert health()["unavailable_models"] == [seeding.ALIAS, seeding.MODEL]


# --- /v1/models --------------------------------------------------------------------------------


def test_models_lists_only_models_an_active_pool_serves(on_commit):
    seeding.catalog(router_urls=[ROUTER])
    drained = seeding.catalog(
        router_urls=[ROUTER], model="drained-model", aliases=(), pool="drained-pool"
    )
    disabled = seeding.catalog(
        router_urls=[ROUTER], model="off-pool-model", aliases=(), pool="off-pool"
    )
    tenant = seeding.tenant()
    assert listed_models(tenant.secret) == sorted(
        [seeding.ALIAS, seeding.MODEL, "drained-model", "off-pool-model"]
    )

    with on_commit():
        pool_set_status(pool=drained.pool, status="draining")
        pool_set_status(pool=disabled.pool, status="disabled")

    assert listed_models(tenant.secret) == [seeding.ALIAS, seeding.MODEL]


def test_models_leaves_out_a_disabled_model_and_keeps_one_with_an_active_pool_left(on_commit):
    seeding.catalog(router_urls=[ROUTER])
    second = seeding.catalog(router_urls=[ROUTER], pool="second-pool")
    other = seeding.catalog(
        router_urls=[ROUTER], model="other-model", aliases=(), pool="other-pool"
    )
    tenant = seeding.tenant()

    with on_commit():
        pool_set_status(pool=second.pool, status="draining")
        model_set_status(model=other.model, status="disabled")

    assert listed_models(tenant.secret) == [seeding.ALIAS, seeding.MODEL]
