"""The in-process catalog snapshot: what it holds, what it costs, when it reloads."""

from __future__ import annotations

import threading

import pytest

from pools import catalog, services
from pools.catalog import current_catalog, get_catalog, load_catalog, read_catalog_version
from pools.models import Model, Router, RouterPool


@pytest.fixture
def gemma(db):
    """gemma-4-26b (aliases `default`, `gemma-latest`) on two pools:
    `qwen-backup` (priority 5, draining) and `gemma4` (priority 10, one router disabled)."""
    model = services.model_create(
        name="gemma-4-26b",
        display_name="Gemma 4 26B",
        input_price_per_mtok=150_000,
        output_price_per_mtok=600_000,
        aliases=["default", "gemma-latest"],
    )
    main = services.pool_create(name="gemma4")
    services.router_create(
        pool=main, name="r1", base_url="http://127.0.0.1:5010/", api_key="rk-one", weight=3
    )
    services.router_create(pool=main, name="r2", base_url="http://127.0.0.2:5010", api_key="")
    off = services.router_create(
        pool=main, name="r3", base_url="http://127.0.0.3:5010", api_key="rk-three"
    )
    services.router_set_enabled(router=off, enabled=False)
    backup = services.pool_create(name="qwen-backup")
    services.router_create(pool=backup, name="b1", base_url="http://10.0.1.1:5010", api_key="rk-b")
    services.pool_set_status(pool=backup, status=RouterPool.Status.DRAINING)
    services.route_create(model=model, pool=main, session_id=11, priority=10, template="gemma")
    services.route_create(model=model, pool=backup, session_id=22, priority=5, session_in_path=True)
    return model


def test_load_catalog_costs_a_fixed_number_of_queries(gemma, django_assert_max_num_queries):
    for index in range(5):
        model = services.model_create(
            name=f"m{index}", display_name=f"M{index}", aliases=[f"a{index}"]
        )
        pool = services.pool_create(name=f"p{index}")
        services.router_create(pool=pool, name="r", base_url=f"http://10.9.0.{index}", api_key="k")
        services.route_create(model=model, pool=pool, session_id=index)

    with django_assert_max_num_queries(4):
        snapshot = load_catalog("v1")

    assert len(snapshot.models) == 6


def test_aliases_and_canonical_names_resolve_to_the_same_entry(gemma):
    snapshot = load_catalog("v1")

    assert snapshot.resolve("gemma-4-26b").name == "gemma-4-26b"
    assert snapshot.resolve("default") is snapshot.resolve("gemma-4-26b")
    assert snapshot.resolve("gemma-latest").id == gemma.pk
    assert snapshot.resolve("gpt-4") is None
    assert snapshot.public_names() == ["default", "gemma-4-26b", "gemma-latest"]


def test_disabled_models_resolve_with_their_status_but_are_not_listed(gemma):
    services.model_set_status(model=gemma, status=Model.Status.DISABLED)

    snapshot = load_catalog("v1")

    assert snapshot.resolve("default").status == "disabled"
    assert snapshot.public_names() == []
    assert "default" in snapshot.public_names(include_disabled=True)


def test_entry_carries_prices_and_limits_as_integers(gemma):
    entry = load_catalog("v1").resolve("gemma-4-26b")

    assert entry.input_price_per_mtok == 150_000
    assert entry.output_price_per_mtok == 600_000
    assert (entry.context_window, entry.max_output_tokens) == (8192, 2048)


def test_routes_come_by_priority_and_a_draining_pool_shows_its_status(gemma):
    entry = load_catalog("v1").resolve("gemma-4-26b")

    assert [route.pool_name for route in entry.routes] == ["qwen-backup", "gemma4"]
    backup, main = entry.routes
    assert (backup.pool_status, backup.session_id, backup.session_in_path) == ("draining", 22, True)
    assert (main.pool_status, main.session_id, main.template) == ("active", 11, "gemma")
    assert entry.serving_routes() == (main,)


def test_disabled_routers_are_left_out(gemma):
    main = load_catalog("v1").resolve("gemma-4-26b").routes[1]

    assert [router.name for router in main.routers] == ["r1", "r2"]
    assert main.routers[0].base_url == "http://127.0.0.1:5010"
    assert main.routers[0].weight == 3


def test_router_key_is_unsealed_in_the_entry_and_sealed_in_the_database(gemma):
    snapshot = load_catalog("v1")
    r1 = Router.objects.get(name="r1")

    assert snapshot.routers_by_id[r1.pk].api_key == "rk-one"
    assert snapshot.routers_by_id[Router.objects.get(name="r2").pk].api_key == ""
    assert r1.api_key_sealed and "rk-one" not in r1.api_key_sealed
    assert "rk-one" not in repr(snapshot.routers_by_id[r1.pk])


def test_a_router_whose_key_cannot_be_unsealed_sits_out(gemma):
    Router.objects.filter(name="r1").update(api_key_sealed="not-a-fernet-token")

    main = load_catalog("v1").resolve("gemma-4-26b").routes[1]

    assert [router.name for router in main.routers] == ["r2"]


def test_same_version_serves_the_cached_snapshot(gemma, django_assert_num_queries):
    first = current_catalog("v1")

    with django_assert_num_queries(0):
        assert current_catalog("v1") is first
        assert current_catalog(b"v1") is first  # as Redis returns it


def test_a_new_version_reloads(gemma):
    first = current_catalog("v1")
    services.model_alias_add(model=gemma, alias="g4")

    assert current_catalog("v1").resolve("g4") is None  # no bump seen: the old snapshot
    second = current_catalog("v2")

    assert second is not first
    assert second.version == "v2"
    assert second.resolve("g4").name == "gemma-4-26b"


def test_an_old_snapshot_reloads_after_max_age(gemma, settings):
    settings.CATALOG_MAX_AGE_SECONDS = 0.01
    first = current_catalog("v1")
    threading.Event().wait(0.02)

    assert current_catalog("v1") is not first


def test_concurrent_callers_with_a_new_version_load_once(gemma, monkeypatch):
    current_catalog("v1")
    fresh = load_catalog("v2")  # built here: other threads cannot see this test's rows
    loads = []

    def slow_load(version):
        loads.append(version)
        threading.Event().wait(0.05)
        return fresh

    monkeypatch.setattr(catalog, "load_catalog", slow_load)
    seen = []
    threads = [
        threading.Thread(target=lambda: seen.append(current_catalog("v2"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert loads == ["v2"]
    assert len(seen) == 8 and all(snapshot is fresh for snapshot in seen)


def test_a_service_bumps_the_version_after_commit(gemma, django_capture_on_commit_callbacks):
    before = read_catalog_version()
    stale = get_catalog()

    with django_capture_on_commit_callbacks(execute=True):
        services.model_set_status(model=gemma, status=Model.Status.DISABLED)

    after = read_catalog_version()
    assert after and after != before
    assert get_catalog() is not stale
    assert get_catalog().resolve("default").status == "disabled"


def test_no_bump_before_commit(gemma, django_capture_on_commit_callbacks):
    before = read_catalog_version()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.pool_set_status(pool=RouterPool.objects.get(name="gemma4"), status="draining")

    assert read_catalog_version() == before
    assert callbacks == [catalog.catalog_bump_version]


def test_versions_are_random_tokens_not_counters(db):
    catalog.catalog_bump_version()
    first = read_catalog_version()
    catalog.catalog_bump_version()
    second = read_catalog_version()

    assert len(first) == 32 and first != second
    assert not first.isdigit()


def test_version_key_follows_the_fast_state_prefix(settings):
    assert catalog.catalog_version_key() == settings.FAST_STATE_PREFIX + "catalog:version"
