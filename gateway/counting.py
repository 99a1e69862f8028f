"""`POST /v1/messages/count_tokens` (Anthropic): the prompt estimate the gateway reserves
with for the same Messages body, rendered through the model's route templates. Nothing
is spent (no request against the limits), billed or logged."""

from __future__ import annotations

from gateway import budget, keyaccess, messages_request
from gateway.flow import _prompt_text  # the flow's own count of the prompt's text
from gateway.tokens import estimate_tokens
from pools.catalog import get_catalog


def count_input_tokens(*, secret: str, body: object, request_id: str, client_ip: str | None) -> int:
    """`input_tokens` for a Messages body (max_tokens is not part of this API and ignored);
    PortalError for a bad body or key, or a model this key may not use (404)."""
    req = messages_request.parse_messages(
        {**body, "max_tokens": 1} if isinstance(body, dict) else body
    )
    ctx = keyaccess.key_context(secret, request_id=request_id, client_ip=client_ip, counted=False)
    entry = keyaccess.usable_model(ctx, get_catalog(), req.model)
    if entry is None:
        raise keyaccess.model_not_found(req.model)
    return budget.prompt_tokens(req, entry, raw_estimate=estimate_tokens(_prompt_text(req)))
