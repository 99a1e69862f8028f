"""What a key may see without spending anything: its auth context, read fresh from
Postgres, and the public model names it may use (`GET /v1/models`, `GET /v1/models/{id}`,
`POST /v1/messages/count_tokens`). No limit, allowance or Unkey credit is spent."""

from __future__ import annotations

import json

from django.utils import timezone

from apikeys.authcontext import build_for_identity
from apikeys.providers import get_provider
from pools.catalog import Catalog, ModelEntry
from portal.errors import PortalError


def key_context(secret: str) -> dict:
    """The key's auth context; PortalError for a key that is unknown, revoked, disabled,
    expired, or whose organization is paused or disabled."""
    raw = build_for_identity(identity=get_provider().authenticate(secret, consume=False), now=timezone.now())
    if raw is None:
        raise PortalError("invalid_api_key")
    ctx = json.loads(raw)
    refusal = {
        "revoked": "api_key_revoked",
        "disabled": "api_key_disabled",
    }.get(ctx["ks"]) or {"paused": "account_paused", "disabled": "account_disabled"}.get(ctx["os"])
    if refusal:
        raise PortalError(refusal)
    if ctx["kx"] and ctx["kx"] <= timezone.now().timestamp() * 1000:
        raise PortalError("api_key_expired")
    return ctx


def usable_model(ctx: dict, catalog: Catalog, name: str) -> ModelEntry | None:
    """The model a public name (canonical or alias) resolves to, if this key may use it
    and an active pool serves it now; None otherwise."""
    entry = catalog.resolve(name)
    if entry is None or not entry.enabled:
        return None
    plan = ctx["p"]
    if not plan["all"] and entry.name not in plan["m"]:
        return None
    if ctx["am"] is not None and entry.name not in ctx["am"]:
        return None
    if not entry.serving_routes():
        return None  # only drained or disabled pools (or no enabled router) serve it
    return entry


def usable_names(ctx: dict, catalog: Catalog) -> list[str]:
    """Every public name (aliases included, sorted) `usable_model` accepts."""
    return [name for name in catalog.public_names() if usable_model(ctx, catalog, name) is not None]


def model_object(name: str) -> dict:
    """One entry of `GET /v1/models`, as OpenAI shapes it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "cortensor"}


def model_not_found(name: str) -> PortalError:
    """The same 404 inference answers for a model that is unknown or not this key's."""
    return PortalError(
        "model_not_found", f"The model `{name}` does not exist or you do not have access to it.", param="model"
    )
