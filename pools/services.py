"""Catalog and pool control changes: models, aliases, pools, routers, routes.

Each call commits in one transaction and then bumps the catalog version, so every
gateway process serves the change from its next request. Draining: a pool set to
`draining` (or `disabled`) gets no new requests; requests already holding one of its
routes finish normally.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.db import transaction

from pools.catalog import bump_on_commit
from pools.models import Model, ModelAlias, Route, Router, RouterPool
from pools.sealing import seal
from portal.errors import PortalError


def _invalid(param: str, message: str) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def _check_choice(value: str, choices: type, param: str) -> None:
    if value not in choices.values:
        raise _invalid(param, f"{param} must be one of: {', '.join(choices.values)}.")


def _check_public_names_free(names: list[str], *, param: str) -> None:
    """Canonical names and aliases share one namespace, so a name resolves to one model."""
    if len(set(names)) != len(names):
        raise _invalid(param, "Public model names must be unique.")
    taken = (
        Model.objects.filter(name__in=names).exists()
        or ModelAlias.objects.filter(alias__in=names).exists()
    )
    if taken:
        raise _invalid(param, "A public model name is already in use.")


def clean_base_url(base_url: str) -> str:
    """An http(s) origin with an optional path prefix. Bare host names are fine
    (`http://router-sim:9101` in docker-compose); credentials belong in `api_key`,
    never in the URL, which appears in logs."""
    base_url = base_url.strip().rstrip("/")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or len(base_url) > Router._meta.get_field("base_url").max_length
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or any(char.isspace() for char in base_url)
    ):
        raise _invalid("base_url", "base_url must be an http(s) URL without credentials.")
    return base_url


# --- models -------------------------------------------------------------------------


@transaction.atomic
def model_create(
    *,
    name: str,
    display_name: str,
    context_window: int = 8192,
    max_output_tokens: int = 2048,
    input_price_per_mtok: int = 0,
    output_price_per_mtok: int = 0,
    status: str = Model.Status.ENABLED,
    aliases: Iterable[str] = (),
) -> Model:
    aliases = list(aliases)
    _check_choice(status, Model.Status, "status")
    _check_public_names_free([name], param="name")
    _check_public_names_free([name, *aliases], param="aliases")
    model = Model.objects.create(
        name=name,
        display_name=display_name,
        status=status,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok,
    )
    ModelAlias.objects.bulk_create(ModelAlias(alias=alias, model=model) for alias in aliases)
    bump_on_commit()
    return model


@transaction.atomic
def model_set_status(*, model: Model, status: str) -> Model:
    _check_choice(status, Model.Status, "status")
    model.status = status
    model.save(update_fields=["status", "updated_at"])
    bump_on_commit()
    return model


@transaction.atomic
def model_alias_add(*, model: Model, alias: str) -> ModelAlias:
    _check_public_names_free([alias], param="alias")
    created = ModelAlias.objects.create(alias=alias, model=model)
    bump_on_commit()
    return created


@transaction.atomic
def model_alias_remove(*, alias: ModelAlias) -> None:
    alias.delete()
    bump_on_commit()


# --- pools and routers --------------------------------------------------------------


@transaction.atomic
def pool_create(*, name: str) -> RouterPool:
    if RouterPool.objects.filter(name=name).exists():
        raise _invalid("name", "A pool with this name already exists.")
    pool = RouterPool.objects.create(name=name)
    bump_on_commit()
    return pool


@transaction.atomic
def pool_set_status(*, pool: RouterPool, status: str) -> RouterPool:
    """`active`, `draining` (no new requests, in-flight ones finish) or `disabled`."""
    _check_choice(status, RouterPool.Status, "status")
    pool.status = status
    pool.save(update_fields=["status", "updated_at"])
    bump_on_commit()
    return pool


@transaction.atomic
def router_create(
    *, pool: RouterPool, name: str, base_url: str, api_key: str, weight: int = 1
) -> Router:
    if weight < 1:
        raise _invalid("weight", "weight must be at least 1.")
    if Router.objects.filter(pool=pool, name=name).exists():
        raise _invalid("name", "This pool already has a router with this name.")
    router = Router.objects.create(
        pool=pool,
        name=name,
        base_url=clean_base_url(base_url),
        api_key_sealed=seal(api_key),
        weight=weight,
    )
    bump_on_commit()
    return router


@transaction.atomic
def router_set_enabled(*, router: Router, enabled: bool) -> Router:
    router.enabled = enabled
    router.save(update_fields=["enabled", "updated_at"])
    bump_on_commit()
    return router


@transaction.atomic
def router_set_url(*, router: Router, base_url: str) -> Router:
    router.base_url = clean_base_url(base_url)
    router.save(update_fields=["base_url", "updated_at"])
    bump_on_commit()
    return router


@transaction.atomic
def router_set_key(*, router: Router, api_key: str) -> Router:
    """Replace the router's API key (sealed at rest); an empty key sends no Authorization."""
    router.api_key_sealed = seal(api_key)
    router.save(update_fields=["api_key_sealed", "updated_at"])
    bump_on_commit()
    return router


# --- routes -------------------------------------------------------------------------


@transaction.atomic
def route_create(
    *,
    model: Model,
    pool: RouterPool,
    session_id: int,
    template: str = Route.Template.CHATML,
    api_style: str = Route.ApiStyle.CORTENSOR,
    priority: int = 100,
    session_in_path: bool = False,
) -> Route:
    _check_choice(template, Route.Template, "template")
    _check_choice(api_style, Route.ApiStyle, "api_style")
    if Route.objects.filter(model=model, pool=pool).exists():
        raise _invalid("pool", "This model already has a route to this pool.")
    route = Route.objects.create(
        model=model,
        pool=pool,
        session_id=session_id,
        session_in_path=session_in_path,
        prompt_template=template,
        api_style=api_style,
        priority=priority,
    )
    bump_on_commit()
    return route
