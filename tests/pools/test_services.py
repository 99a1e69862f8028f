"""Catalog and pool control changes: each changes its row and, once committed, bumps the
catalog version so every gateway process serves the change from its next request."""

from __future__ import annotations

import pytest

from pools import services
from pools.catalog import get_catalog, read_catalog_version
from pools.models import Model, ModelAlias, Route, Router, RouterPool
from pools.sealing import unseal
from portal.errors import PortalError


@pytest.fixture
def bumps(db, django_capture_on_commit_callbacks):
    """Run the body, commit, and say whether the catalog version changed."""

    class Bumps:
        def __call__(self, action):
            before = read_catalog_version()
            with django_capture_on_commit_callbacks(execute=True):
                result = action()
            after = read_catalog_version()
            self.changed = after is not None and after != before
            return result

    return Bumps()


@pytest.fixture
def pool(db):
    return services.pool_create(name="gemma4")


@pytest.fixture
def model(db):
    return services.model_create(
        name="gemma-4-26b", display_name="Gemma 4 26B", aliases=["default"]
    )


@pytest.fixture
def router(pool):
    return services.router_create(
        pool=pool, name="r1", base_url="http://127.0.0.1:5010", api_key="rk-1"
    )


def test_model_create_stores_prices_and_aliases(bumps):
    model = bumps(
        lambda: services.model_create(
            name="qwen-3-32b",
            display_name="Qwen 3 32B",
            context_window=32768,
            max_output_tokens=4096,
            input_price_per_mtok=100_000,
            output_price_per_mtok=400_000,
            aliases=["qwen-latest", "qwen"],
        )
    )

    row = Model.objects.get(pk=model.pk)
    assert (row.context_window, row.input_price_per_mtok, row.output_price_per_mtok) == (
        32768,
        100_000,
        400_000,
    )
    assert sorted(row.aliases.values_list("alias", flat=True)) == ["qwen", "qwen-latest"]
    assert bumps.changed
    assert get_catalog().resolve("qwen").name == "qwen-3-32b"


@pytest.mark.parametrize(
    "name, aliases, param",
    [
        ("gemma-4-26b", [], "name"),  # canonical name taken
        ("default", [], "name"),  # an alias already uses it
        ("qwen", ["default"], "aliases"),
        ("qwen", ["gemma-4-26b"], "aliases"),
        ("qwen", ["q", "q"], "aliases"),
        ("qwen", ["qwen"], "aliases"),
    ],
)
def test_public_names_stay_unique_across_models_and_aliases(model, name, aliases, param):
    with pytest.raises(PortalError) as caught:
        services.model_create(name=name, display_name="x", aliases=aliases)

    assert caught.value.code == "invalid_request_error"
    assert caught.value.param == param


def test_model_set_status(model, bumps):
    bumps(lambda: services.model_set_status(model=model, status=Model.Status.DISABLED))

    assert Model.objects.get(pk=model.pk).status == "disabled"
    assert bumps.changed
    assert get_catalog().resolve("default").status == "disabled"


def test_model_set_status_rejects_unknown_status(model):
    with pytest.raises(PortalError) as caught:
        services.model_set_status(model=model, status="retired")

    assert caught.value.param == "status"
    assert Model.objects.get(pk=model.pk).status == "enabled"


def test_model_alias_add_and_remove(model, bumps):
    alias = bumps(lambda: services.model_alias_add(model=model, alias="g4"))
    assert bumps.changed
    assert get_catalog().resolve("g4").name == "gemma-4-26b"

    bumps(lambda: services.model_alias_remove(alias=alias))
    assert bumps.changed
    assert not ModelAlias.objects.filter(alias="g4").exists()
    assert get_catalog().resolve("g4") is None


def test_pool_create(bumps):
    pool = bumps(lambda: services.pool_create(name="qwen"))

    assert RouterPool.objects.get(pk=pool.pk).status == "active"
    assert bumps.changed


def test_pool_create_refuses_a_duplicate_name(pool):
    with pytest.raises(PortalError) as caught:
        services.pool_create(name="gemma4")

    assert caught.value.param == "name"


@pytest.mark.parametrize("status", ["draining", "disabled", "active"])
def test_pool_set_status(pool, bumps, status):
    bumps(lambda: services.pool_set_status(pool=pool, status=status))

    assert RouterPool.objects.get(pk=pool.pk).status == status
    assert bumps.changed


def test_draining_pool_takes_no_new_requests_but_held_routes_stay_usable(
    model, pool, router, bumps
):
    bumps(lambda: services.route_create(model=model, pool=pool, session_id=7))
    held = get_catalog().resolve("default").serving_routes()[0]

    bumps(lambda: services.pool_set_status(pool=pool, status="draining"))

    assert get_catalog().resolve("default").serving_routes() == ()
    assert held.pool_status == "active" and held.routers  # the in-flight request's view


def test_router_create_seals_the_key_and_trims_the_url(pool, bumps):
    router = bumps(
        lambda: services.router_create(
            pool=pool,
            name="r9",
            base_url="https://router.example.com/ ",
            api_key="rk-secret",
            weight=2,
        )
    )

    row = Router.objects.get(pk=router.pk)
    assert row.base_url == "https://router.example.com"
    assert row.api_key_sealed != "rk-secret" and "rk-secret" not in row.api_key_sealed
    assert unseal(row.api_key_sealed) == "rk-secret"
    assert (row.weight, row.enabled) == (2, True)
    assert bumps.changed


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"base_url": "ftp://127.0.0.1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "http://user:pw@127.0.0.2"}, "base_url"),
        ({"base_url": "http://127.0.0.2:99999"}, "base_url"),
        ({"base_url": "http://127.0.0.2?session=1"}, "base_url"),
        ({"weight": 0}, "weight"),
        ({"name": "r1"}, "name"),  # taken in this pool
    ],
)
def test_router_create_rejects_bad_input(pool, router, changes, param):
    fields = {"name": "r2", "base_url": "http://127.0.0.2:5010", "api_key": "k", **changes}

    with pytest.raises(PortalError) as caught:
        services.router_create(pool=pool, **fields)

    assert caught.value.param == param


@pytest.mark.parametrize(
    "base_url", ["http://router-sim:9101", "http://127.0.0.1:5010", "https://[::1]:8443/router/"]
)
def test_router_create_accepts_bare_hosts_addresses_and_path_prefixes(pool, base_url):
    router = services.router_create(pool=pool, name="r2", base_url=base_url, api_key="")

    assert router.base_url == base_url.rstrip("/")


def test_router_set_enabled(router, bumps):
    bumps(lambda: services.router_set_enabled(router=router, enabled=False))

    assert Router.objects.get(pk=router.pk).enabled is False
    assert bumps.changed
    assert router.pk not in get_catalog().routers_by_id


def test_router_set_url_trims_and_checks_it(router, bumps):
    bumps(lambda: services.router_set_url(router=router, base_url="http://router-b:9102/"))

    assert Router.objects.get(pk=router.pk).base_url == "http://router-b:9102"
    assert bumps.changed
    assert get_catalog().routers_by_id[router.pk].base_url == "http://router-b:9102"
    with pytest.raises(PortalError) as refused:
        services.router_set_url(router=router, base_url="http://user:pw@router-b")
    assert refused.value.param == "base_url"


def test_router_set_key(router, bumps):
    bumps(lambda: services.router_set_key(router=router, api_key="rk-2"))

    row = Router.objects.get(pk=router.pk)
    assert unseal(row.api_key_sealed) == "rk-2"
    assert "rk-2" not in row.api_key_sealed
    assert bumps.changed
    assert get_catalog().routers_by_id[router.pk].api_key == "rk-2"


def test_router_set_key_to_empty_clears_it(router):
    services.router_set_key(router=router, api_key="")

    assert Router.objects.get(pk=router.pk).api_key_sealed == ""


def test_route_create(model, pool, router, bumps):
    route = bumps(
        lambda: services.route_create(
            model=model,
            pool=pool,
            session_id=42,
            template="llama3",
            api_style="openai",
            priority=5,
            session_in_path=True,
        )
    )

    row = Route.objects.get(pk=route.pk)
    assert (
        row.session_id,
        row.prompt_template,
        row.api_style,
        row.priority,
        row.session_in_path,
    ) == (
        42,
        "llama3",
        "openai",
        5,
        True,
    )
    assert bumps.changed
    entry = get_catalog().resolve("gemma-4-26b").routes[0]
    assert (entry.session_id, entry.api_style, entry.template) == (42, "openai", "llama3")


@pytest.mark.parametrize(
    "changes, param",
    [({"template": "mistral"}, "template"), ({"api_style": "grpc"}, "api_style")],
)
def test_route_create_rejects_unknown_choices(model, pool, changes, param):
    with pytest.raises(PortalError) as caught:
        services.route_create(model=model, pool=pool, session_id=1, **changes)

    assert caught.value.param == param


def test_route_create_refuses_a_second_route_to_the_same_pool(model, pool):
    services.route_create(model=model, pool=pool, session_id=1)

    with pytest.raises(PortalError) as caught:
        services.route_create(model=model, pool=pool, session_id=2)

    assert caught.value.param == "pool"


def test_a_failed_change_does_not_bump(model, bumps):
    with pytest.raises(PortalError):
        bumps(lambda: services.model_set_status(model=model, status="retired"))

    assert read_catalog_version() is None
