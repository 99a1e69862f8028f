"""`GET /v1/models/{id}` (the openai SDK's `models.retrieve`): the entry `/v1/models` lists for
that name, or 404 `model_not_found` when the key may not use it or nothing serves it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Organization
from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from pools.services import model_set_status, pool_set_status
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

ROUTER = "http://127.0.0.1:9"  # never called


def get(path: str, secret: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return Client().get(path, **headers)


def listed(secret: str) -> dict[str, dict]:
    return {m["id"]: m for m in get("/v1/models", secret).json()["data"]}


def test_a_model_and_its_alias_are_the_entries_the_list_holds():
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant()

    for name in (seeding.MODEL, seeding.ALIAS):
        response = get(f"/v1/models/{name}", tenant.secret)

        assert response.status_code == 200, response.content
        assert (
            response.json()
            == listed(tenant.secret)[name]
            == {"id": name, "object": "model", "created": 0, "owned_by": "cortensor"}
        )
        assert response["x-request-id"].startswith("req_")


def test_a_model_the_key_may_not_use_or_that_does_not_exist_is_404_model_not_found():
    seeding.catalog(router_urls=[ROUTER])
    seeding.catalog(
        router_urls=[ROUTER], model="other-model", aliases=("other",), pool="other-pool"
    )
    restricted = seeding.tenant(allowed_models=[seeding.MODEL])

    assert (
        get(f"/v1/models/{seeding.ALIAS}", restricted.secret).status_code == 200
    )  # an alias of an allowed model
    for name in ("other-model", "other", "no-such-model"):
        error = assert_stable_error(
            get(f"/v1/models/{name}", restricted.secret),
            status=404,
            code="model_not_found",
            type_="invalid_request_error",
            param="model",
        )
        assert (
            error["message"]
            == f"The model `{name}` does not exist or you do not have access to it."
        )


def test_a_model_no_active_pool_serves_or_that_is_disabled_is_404(on_commit):
    drained = seeding.catalog(
        router_urls=[ROUTER], model="drained-model", aliases=(), pool="drained-pool"
    )
    disabled = seeding.catalog(
        router_urls=[ROUTER], model="disabled-model", aliases=("off",), pool="off-pool"
    )
    tenant = seeding.tenant()
    assert get("/v1/models/drained-model", tenant.secret).status_code == 200

    with on_commit():
        pool_set_status(pool=drained.pool, status="draining")
        model_set_status(model=disabled.model, status="disabled")

    for name in ("drained-model", "disabled-model", "off"):
        assert_stable_error(
            get(f"/v1/models/{name}", tenant.secret), status=404, code="model_not_found"
        )


def test_the_same_key_checks_as_the_list():
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant()
    api_key_revoke(key=tenant.key, actor=None, now=timezone.now())

    assert_stable_error(
        get(f"/v1/models/{seeding.MODEL}", None), status=401, code="invalid_api_key"
    )
    assert_stable_error(
        get(f"/v1/models/{seeding.MODEL}", "ctr_live_" + "A" * 43),
        status=401,
        code="invalid_api_key",
    )
    assert_stable_error(
        get(f"/v1/models/{seeding.MODEL}", tenant.secret), status=401, code="api_key_revoked"
    )


@pytest.mark.parametrize(
    "faults",
    [
        {"org": "paused"},
        {"org": "disabled"},
        {"key": "disabled", "org": "paused"},
        {"expired": True, "org": "disabled"},
    ],
)
def test_the_listing_refuses_a_key_exactly_as_inference_does(faults):
    seeding.catalog(router_urls=[ROUTER])
    tenant = seeding.tenant()
    if "key" in faults or "expired" in faults:
        ApiKey.objects.filter(pk=tenant.key.pk).update(
            status=faults.get("key", "active"),
            expires_at=timezone.now() - timedelta(seconds=1) if "expired" in faults else None,
        )
    Organization.objects.filter(pk=tenant.org.pk).update(status=faults["org"])

    inference = Client().post(
        "/v1/chat/completions",
        data={"model": seeding.MODEL, "messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tenant.secret}",
    )
    listing = get("/v1/models", tenant.secret)
    assert inference.status_code >= 400
    assert (listing.status_code, listing.json()["error"]["code"]) == (
        inference.status_code,
        inference.json()["error"]["code"],
    )
