"""What a key may see without spending an allowance: its auth context (from fast state,
as admission reads it) and the public model names it may use (`GET /v1/models`,
`GET /v1/models/{id}`, `POST /v1/messages/count_tokens`). A listing counts as one request
against the key's requests per minute (count_tokens does not); no tokens, allowance or
Unkey credit is spent."""

from __future__ import annotations

from django.utils import timezone

from apikeys.authcontext import AuthContext
from apikeys.providers import get_provider
from gateway import admission, replies
from pools.catalog import Catalog, ModelEntry
from portal.errors import PortalError


def key_context(
    secret: str, *, request_id: str, client_ip: str | None, counted: bool = True
) -> AuthContext:
    """The key's auth context; PortalError for whatever admission would refuse the key
    for (AuthContext.refusal: unknown, revoked, disabled, expired, organization not
    active; a `client_ip` outside its allowlist) and, when `counted`, 429 past its
    requests per minute."""
    admitted = admission.admit(
        identity=get_provider().authenticate(secret, consume=False),
        request_id=request_id,
        model=admission.LISTING if counted else admission.KEY_CHECK,
        estimate=lambda entry: 0,
        now=timezone.now(),
        client_ip=client_ip,
    )
    if admitted.adm.status != "listed":
        raise replies.refusal(admitted.adm, model="")
    return admitted.adm.ctx


def usable_model(ctx: AuthContext, catalog: Catalog, name: str) -> ModelEntry | None:
    """The model a public name (canonical or alias) resolves to, if this key may use it
    and an active pool serves it now; None otherwise."""
    entry = catalog.resolve(name)
    if entry is None or not entry.enabled or not ctx.allows(entry.name):
        return None
    if not entry.serving_routes():
        return None  # only drained or disabled pools (or no enabled router) serve it
    return entry


def usable_names(ctx: AuthContext, catalog: Catalog) -> list[str]:
    """Every public name (aliases included, sorted) `usable_model` accepts."""
    return [name for name in catalog.public_names() if usable_model(ctx, catalog, name) is not None]


def model_object(name: str) -> dict:
    """One entry of `GET /v1/models`, as OpenAI shapes it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "cortensor"}


def model_not_found(name: str) -> PortalError:
    """The same 404 inference answers for a model that is unknown or not this key's."""
    return PortalError(
        "model_not_found",
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
    )
