"""Steps 9–10: call a router, failing over to another while nothing reached the client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings

from gateway import limits
from gateway.templates import flatten_for_chat, render_request
from gateway.validation import InferenceRequest
from pools.catalog import ModelEntry, RouteEntry, RouterEntry
from pools.client import RouterClient, RouterError
from portal.errors import PortalError

_client = RouterClient()


@dataclass(slots=True)
class Target:
    route: RouteEntry
    router: RouterEntry


@dataclass(slots=True)
class Trail:
    """Where the request went; settlement reports the last router's outcome."""

    target: Target | None = None
    tried: set[int] = field(default_factory=set)
    outcome: str = ""


def locate(entry: ModelEntry, router_id: int) -> Target:
    for route in entry.routes:
        for router in route.routers:
            if router.id == router_id:
                return Target(route=route, router=router)
    raise LookupError(router_id)


def router_body(req: InferenceRequest, route: RouteEntry, *, max_tokens: int) -> dict:
    """The body a route expects: a rendered prompt (cortensor) or the chat messages (openai)."""
    if route.api_style == "openai":
        if req.kind == "completion":
            messages = [{"role": "user", "content": req.prompt}]
        else:
            messages = flatten_for_chat(req)
        body = {"messages": messages, "max_tokens": max_tokens, "stream": req.stream}
        if req.stream:
            body["stream_options"] = {"include_usage": True}
    else:
        prompt = req.prompt if req.kind == "completion" else render_request(route.template, req)
        body = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": req.stream,
            "timeout": int(settings.ROUTER_READ_TIMEOUT),
        }
    for name in ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.stop:
        body["stop"] = req.stop
    return body


def _failure(err: RouterError) -> PortalError:
    if err.kind == "timeout":
        return PortalError("upstream_timeout")
    if (
        err.kind == "status"
        and err.status is not None
        and 400 <= err.status < 500
        and not err.retryable
    ):
        # A router's "bad request" (400, 413, 422...; pools.routererrors.RETRYABLE_4XX are
        # the router's own state): the request is at fault, and a 4xx tells SDKs not to retry.
        return PortalError(
            "upstream_rejected_request",
            f"The model backend rejected the request as invalid (HTTP {err.status}). Check the request's"
            " parameters; a long prompt may not fit the model: shorten it or lower max_tokens.",
        )
    if not err.retryable:
        return PortalError("upstream_error", status=502)
    return PortalError("no_healthy_router")


def with_failover(
    *,
    entry: ModelEntry,
    first_router_id: int,
    request_id: str,
    now_ms: Callable[[], int],
    trail: Trail,
    attempt: Callable[[Target], object],
):
    """Run `attempt` on the admitted router, then on others while failures are retryable.

    `trail.target` always names the router whose in-flight slot this request holds
    (None when it holds none), for settlement to release.
    """
    router_id = first_router_id
    last: RouterError | None = None
    for _ in range(max(1, settings.GATEWAY_MAX_TRIES)):
        if not router_id:
            break
        trail.target = locate(entry, router_id)
        try:
            result = attempt(trail.target)
        except RouterError as err:
            if not err.retryable:
                trail.outcome = "ok"  # the router answered; the request was at fault
                raise _failure(err) from None
            last = err
            trail.tried.add(router_id)
            trail.target = None  # failover counts the failure and frees the slot
            router_id = limits.failover(
                now_ms=now_ms(),
                request_id=request_id,
                failed_router_id=router_id,
                cands=limits.candidates(entry.routes, exclude=frozenset(trail.tried)),
            )
            continue
        trail.outcome = "ok"
        return result
    if router_id:
        trail.target = locate(entry, router_id)  # picked but not tried: settlement frees it
    raise _failure(last) if last is not None else PortalError("no_healthy_router")


def complete(*, target: Target, body: dict, request_id: str) -> dict:
    """One non-streaming call; OpenAI-style answers are reduced to the text-completion shape."""
    if target.route.api_style == "openai":
        answer = _client.chat(
            router=target.router, route=target.route, body=body, request_id=request_id, stream=False
        )
        return chat_to_text(answer)
    return _client.complete(
        router=target.router, route=target.route, body=body, request_id=request_id
    )


def open_stream(
    *, target: Target, body: dict, request_id: str
) -> tuple[dict | None, Iterator[dict]]:
    """Start a stream and wait for its first chunk, so a failure here can still fail over."""
    if target.route.api_style == "openai":
        chunks = _as_text_chunks(
            _client.chat(
                router=target.router,
                route=target.route,
                body=body,
                request_id=request_id,
                stream=True,
            )
        )
    else:
        chunks = _client.stream(
            router=target.router, route=target.route, body=body, request_id=request_id
        )
    first = next(chunks, None)
    return first, chunks


def _as_text_chunks(chunks: Iterator[dict]) -> Iterator[dict]:
    """OpenAI chat chunks as text-completion chunks; closing this closes the router stream."""
    try:
        for chunk in chunks:
            yield chat_to_text(chunk)
    finally:
        chunks.close()


def chat_to_text(answer: dict) -> dict:
    """An OpenAI chat answer or chunk in the router's text-completion shape."""
    out = {k: v for k, v in answer.items() if k != "choices"}
    choices = []
    for choice in answer.get("choices") or []:
        part = choice.get("message") or choice.get("delta") or {}
        choices.append(
            {
                "index": choice.get("index", 0),
                "text": part.get("content") or "",
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out["choices"] = choices
    return out
