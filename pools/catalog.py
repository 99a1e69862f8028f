"""The in-process catalog snapshot: public model names -> routes -> routers, without a
Postgres read per request.

Every process keeps one immutable `Catalog`. Control changes (pools.services) set a
fresh random version token in fast state after they commit; a caller that sees a
token different from its snapshot's reloads it with a handful of queries. Entries are
frozen, so a request that holds a `RouteEntry` keeps a consistent view even while a
reload swaps the snapshot (draining: in-flight requests finish on what they hold).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import transaction

from infra import fastkeys, faststate
from infra.pgpool.base import release_pooled
from pools.models import Model, ModelAlias, Route, Router, RouterPool
from pools.sealing import unseal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RouterEntry:
    id: int
    name: str
    base_url: str  # no trailing slash
    api_key: str = field(repr=False)  # unsealed; never log it
    weight: int


@dataclass(frozen=True, slots=True)
class RouteEntry:
    id: int
    pool_id: int
    pool_name: str
    pool_status: str
    session_id: int
    session_in_path: bool
    template: str
    api_style: str
    priority: int
    routers: tuple[RouterEntry, ...]  # enabled routers only

    @property
    def accepts_requests(self) -> bool:
        """A draining or disabled pool takes no new requests."""
        return self.pool_status == RouterPool.Status.ACTIVE and bool(self.routers)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: int
    name: str
    display_name: str
    status: str
    context_window: int
    max_output_tokens: int
    input_price_per_mtok: int
    output_price_per_mtok: int
    routes: tuple[RouteEntry, ...]  # by priority, then id

    @property
    def enabled(self) -> bool:
        return self.status == Model.Status.ENABLED

    def serving_routes(self) -> tuple[RouteEntry, ...]:
        """Routes that may take a new request, in the order to try them."""
        return tuple(route for route in self.routes if route.accepts_requests)


@dataclass(frozen=True, slots=True)
class Catalog:
    version: str | None
    models: dict[str, ModelEntry]  # canonical name -> entry
    names: dict[str, str]  # every public name (canonical and aliases) -> canonical name
    routers_by_id: dict[int, RouterEntry]
    loaded_at: float = 0.0  # time.monotonic() of the load

    def resolve(self, public_name: str) -> ModelEntry | None:
        canonical = self.names.get(public_name)
        return self.models.get(canonical) if canonical is not None else None

    def public_names(self, *, include_disabled: bool = False) -> list[str]:
        """Every name a customer may send (aliases included), sorted."""
        return sorted(
            name
            for name, canonical in self.names.items()
            if include_disabled or self.models[canonical].enabled
        )


def load_catalog(version: str | None) -> Catalog:
    """A fresh snapshot from Postgres: four queries whatever the catalog's size."""
    routers_by_pool: dict[int, list[RouterEntry]] = defaultdict(list)
    routers_by_id: dict[int, RouterEntry] = {}
    for router in Router.objects.filter(enabled=True).order_by("pool_id", "name", "id"):
        try:
            api_key = unseal(router.api_key_sealed)
        except ValueError:
            # One bad row must not take the whole catalog down; the router sits out.
            logger.error("router %s: API key cannot be unsealed; router left out", router.pk)
            continue
        entry = RouterEntry(
            id=router.pk,
            name=router.name,
            base_url=router.base_url.rstrip("/"),
            api_key=api_key,
            weight=router.weight,
        )
        routers_by_pool[router.pool_id].append(entry)
        routers_by_id[entry.id] = entry

    routes_by_model: dict[int, list[RouteEntry]] = defaultdict(list)
    for route in Route.objects.select_related("pool").order_by("model_id", "priority", "id"):
        routes_by_model[route.model_id].append(
            RouteEntry(
                id=route.pk,
                pool_id=route.pool_id,
                pool_name=route.pool.name,
                pool_status=route.pool.status,
                session_id=route.session_id,
                session_in_path=route.session_in_path,
                template=route.prompt_template,
                api_style=route.api_style,
                priority=route.priority,
                routers=tuple(routers_by_pool.get(route.pool_id, ())),
            )
        )

    models: dict[str, ModelEntry] = {}
    names: dict[str, str] = {}
    canonical_by_id: dict[int, str] = {}
    for model in Model.objects.order_by("name"):
        models[model.name] = ModelEntry(
            id=model.pk,
            name=model.name,
            display_name=model.display_name,
            status=model.status,
            context_window=model.context_window,
            max_output_tokens=model.max_output_tokens,
            input_price_per_mtok=model.input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
            routes=tuple(routes_by_model.get(model.pk, ())),
        )
        names[model.name] = model.name
        canonical_by_id[model.pk] = model.name
    for alias, model_id in ModelAlias.objects.values_list("alias", "model_id"):
        # A canonical name always wins over an alias spelled the same.
        names.setdefault(alias, canonical_by_id[model_id])

    return Catalog(
        version=version,
        models=models,
        names=names,
        routers_by_id=routers_by_id,
        loaded_at=time.monotonic(),
    )


# --- the process-wide snapshot ----------------------------------------------------------

_lock = threading.Lock()
_cached: Catalog | None = None
_cached_namespace: str | None = None


def catalog_version_key() -> str:
    """The fast-state key holding the catalog version token.

    A function rather than a constant because the key carries FAST_STATE_PREFIX, which
    tests change per test.
    """
    return fastkeys.CATALOG_VERSION()


def _normalize(version: str | bytes | None) -> str | None:
    return version.decode() if isinstance(version, bytes) else version


def current_catalog(version: str | bytes | None) -> Catalog:
    """The process-wide snapshot, reloaded when `version` (read by the caller from fast
    state, usually in its one round trip) differs from the snapshot's.

    Also reloads a snapshot older than CATALOG_MAX_AGE_SECONDS (default 60), so a bump
    lost to a fast-state outage heals by itself.
    """
    global _cached, _cached_namespace
    version = _normalize(version)
    namespace = settings.FAST_STATE_PREFIX
    max_age = getattr(settings, "CATALOG_MAX_AGE_SECONDS", 60.0)
    snapshot = _cached
    if _is_fresh(snapshot, version, namespace, max_age):
        return snapshot
    # Nobody may wait for the lock while holding a pooled database connection: the holder
    # needs one to load, and waiters holding the rest of a small pool would stall it.
    release_pooled()
    with _lock:
        snapshot = _cached
        if _is_fresh(snapshot, version, namespace, max_age):
            return snapshot
        snapshot = load_catalog(version)
        _cached, _cached_namespace = snapshot, namespace
        return snapshot


def _is_fresh(
    snapshot: Catalog | None, version: str | None, namespace: str, max_age: float
) -> bool:
    return (
        snapshot is not None
        and snapshot.version == version
        # The namespace is constant in production; tests get a fresh one per test.
        and _cached_namespace == namespace
        and (not max_age or time.monotonic() - snapshot.loaded_at < max_age)
    )


def cached_catalog() -> Catalog | None:
    """This process's snapshot as it stands, without asking fast state (None before the first)."""
    return _cached


def read_catalog_version() -> str | None:
    return _normalize(faststate.get_client().get(catalog_version_key()))


def get_catalog() -> Catalog:
    """The snapshot for paths that do not already read fast state (/health, /v1/models)."""
    try:
        version = read_catalog_version()
    except redis.RedisError:
        logger.warning("fast state unavailable: serving the cached catalog", exc_info=True)
        snapshot = _cached
        return snapshot if snapshot is not None else current_catalog(None)
    return current_catalog(version)


def catalog_bump_version() -> None:
    """Point every process at a new snapshot.

    A random token, not INCR: after fast state loses its data an old number could come
    back and match a stale snapshot; a fresh uuid never does.
    """
    try:
        faststate.get_client().set(catalog_version_key(), uuid.uuid4().hex)
    except redis.RedisError:
        # The change is committed; snapshots pick it up within CATALOG_MAX_AGE_SECONDS.
        logger.exception("could not bump the catalog version")


def bump_on_commit() -> None:
    transaction.on_commit(catalog_bump_version)
