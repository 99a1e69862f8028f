"""The request flow of the hosted /v1 API.

1 request id (middleware) · 2 the key is identified (its provider) · 3–8 admission, one
Redis round trip (gateway/admission.py runs gateway/lua/admit.lua), refusing in the order
gateway/refusals.py lists: global pause → key and org status (AuthContext.refusal, the
same check `/v1/models` makes) → model known and enabled → entitlement (AuthContext.allows)
→ the prompt fits the model's context window (decided here, answered by the script) → rate
limits per key and org → the plan's short window → the period's allowance (the worst case
reserved) → a router. Entitlement and the context window come before the limits because a
refused request must not spend them; nothing is recorded until every check passes.
9–10 forward with failover · 11 normalize · 12 settle the reservation · 13 durable request
log + usage event.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from apikeys.providers import KeyIdentity, get_provider
from gateway import (
    admission,
    budget,
    degraded,
    forward,
    junk,
    openai_format,
    replies,
    stops,
    toolflow,
    toolstream,
    upkeep,
)
from gateway.calls import Call, body_for, finish_call, hold_reservation, make_answer, sending
from gateway.protocols import Shape
from gateway.tokens import estimate_tokens
from gateway.toolflow import close_chunks, complete, read_checked, router_failed
from gateway.validation import InferenceRequest, parse_json_body
from infra.pgpool.base import release_pooled
from pools.catalog import ModelEntry, cached_catalog
from pools.client import RouterError
from portal.errors import PortalError

logger = logging.getLogger(__name__)


def api_key_from(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        secret = header[7:].strip()
    else:
        secret = request.META.get("HTTP_X_API_KEY", "").strip()
    if not secret:
        raise PortalError(
            "invalid_api_key",
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key'.",
        )
    return secret


def read_body(request) -> object:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise PortalError(
            "request_too_large",
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        )
    if not length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django trusts Content-Length alone; read a chunked body ourselves, bounded.
        raw = request.META["wsgi.input"].read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise PortalError(
                "request_too_large",
                f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            )
        return parse_json_body(raw)
    return parse_json_body(request.body)


def _prompt_text(req: InferenceRequest) -> str:
    if req.kind == "completion":
        return req.prompt
    return req.system + "".join(m["content"] for m in req.messages)


def client_ip(request) -> str | None:
    """The client's address: the socket's, or, behind TRUSTED_PROXY_COUNT proxies that each
    append to X-Forwarded-For, the address the outermost trusted proxy saw (entries left of
    it are the client's own claims and are ignored)."""
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    return hops[-trusted] if len(hops) >= trusted else remote


def serve(request, shape: Shape) -> HttpResponse:
    call = Call(
        request_id=request.request_id,
        endpoint=shape.endpoint,
        started=time.perf_counter(),
        now=timezone.now(),
        client_ip=client_ip(request),
    )
    try:
        identity = None
        if settings.GATEWAY_ENFORCEMENT:
            junk.check(call.client_ip)
            # The key's shape (and, with Unkey, the key) is checked before the body is read.
            identity = get_provider().authenticate(api_key_from(request))
        req = shape.parse(read_body(request))
        call.model = req.model
        call.prompt_tokens = estimate_tokens(_prompt_text(req))
        if identity is not None:
            _admit(call, identity=identity, req=req)
        else:
            _admit_unenforced(call, req=req)
        release_pooled()  # a cold admission read Postgres: not held through the router call
        if req.stream:
            return _stream(call, shape, req)
        return _whole(call, shape, req)
    except PortalError as err:
        call.status, call.error_code = err.status, err.code
        if junk.unlogged(err):
            call.unlogged = True
            if err.code in junk.FAILED_AUTH:
                junk.failed(call.client_ip)
        finish_call(call)
        return replies.error_response(err, style=shape.style)
    except degraded.UNAVAILABLE:
        logger.warning("fast state unavailable", extra={"request_id": call.request_id})
        err = degraded.unavailable()
        call.status, call.error_code = err.status, err.code
        finish_call(call)
        return replies.error_response(err, style=shape.style)
    except Exception:
        logger.exception("gateway failure", extra={"request_id": call.request_id})
        call.status, call.error_code = 500, "internal_error"
        finish_call(call)
        return replies.error_response(PortalError("internal_error"), style=shape.style)


def _max_tokens(call: Call, req: InferenceRequest) -> int:
    """The max_tokens sent to the router: the client's, capped at the model's max output,
    or what the model can still produce after the prompt (the budget admission reserved,
    planned once there; planned here only without admission: the enforcement-off baseline)."""
    entry = call.entry
    if req.max_tokens is not None:
        return min(req.max_tokens, entry.max_output_tokens)
    planned = call.budget
    if planned is None:
        prompt = _prompt_tokens(req, entry, raw_estimate=call.prompt_tokens)
        planned = budget.plan(req, entry, prompt_tokens=prompt)
    return max(1, planned.completion)


def _prompt_tokens(req: InferenceRequest, entry: ModelEntry, *, raw_estimate: int) -> int:
    return budget.prompt_tokens(req, entry, raw_estimate=raw_estimate)


def _admit(call: Call, *, identity: KeyIdentity, req: InferenceRequest) -> None:
    """Admission (gateway/admission.py) with the request's budget on the resolved model: a
    request that cannot fit its context window is refused once the key may use the model,
    before anything is reserved."""
    call.identity = identity

    def estimate(entry: ModelEntry | None) -> int:
        if entry is None:
            call.budget = None
            return 0
        call.prompt_tokens = _prompt_tokens(req, entry, raw_estimate=call.prompt_tokens)
        call.budget = budget.plan(req, entry, prompt_tokens=call.prompt_tokens)
        return call.budget.total

    def refuse(entry: ModelEntry | None) -> str:
        return budget.CONTEXT_LENGTH if call.budget is not None and not call.budget.fits else ""

    def cost(entry: ModelEntry | None) -> int:
        """Asked only for a key with a budget: the request's worst-case cost."""
        if entry is None or call.budget is None:
            return 0
        bound = budget.prompt_bound(req, entry, estimate=call.prompt_tokens)
        call.est_cost = budget.worst_cost(
            entry, prompt_bound=bound, completion=call.budget.completion
        )
        return call.est_cost

    try:
        admitted = admission.admit(
            identity=identity,
            request_id=call.request_id,
            model=req.model,
            estimate=estimate,
            refuse=refuse,
            cost=cost,
            client_ip=call.client_ip,
            now=call.now,
        )
    except degraded.UNAVAILABLE:
        # Redis is away: refused (fast_state_unavailable), or served on this process's
        # memory of the key when FAST_STATE_DEGRADED allows it (gateway/degraded.py).
        catalog = cached_catalog()
        entry = catalog.resolve(req.model) if catalog is not None else None
        estimate(entry)
        adm = degraded.admit(
            cache_key=identity.cache_key,
            model=req.model,
            catalog=catalog,
            now_ms=int(call.now.timestamp() * 1000),
            refuse=refuse(entry),
            client_ip=call.client_ip,
        )
        call.ctx, call.entry = adm.ctx, entry
        if adm.status != "ok":
            raise replies.refusal(adm, model=req.model, budget=call.budget, kind=req.kind) from None
        call.est_tokens = call.budget.total
        call.degraded = adm
        call.trail.target = forward.locate(entry, adm.router_id)
        return
    call.ctx, call.entry = admitted.adm.ctx, admitted.entry
    if admitted.adm.status != "ok":
        raise replies.refusal(admitted.adm, model=req.model, budget=call.budget, kind=req.kind)
    call.est_tokens = call.budget.total
    hold_reservation(call, admitted.adm)  # from here on: a reservation to settle, leases to renew
    degraded.remember(identity.cache_key, admitted.adm.ctx)
    upkeep.ensure_started()


def _admit_unenforced(call: Call, *, req: InferenceRequest) -> None:
    """Benchmark baseline (GATEWAY_ENFORCEMENT=false): route only, no checks or limits."""
    import random

    from pools.catalog import get_catalog

    entry = get_catalog().resolve(req.model)
    if entry is None:
        raise PortalError("model_not_found")
    routers = [r for route in entry.serving_routes() for r in route.routers]
    if not routers:
        raise PortalError("no_healthy_router")
    call.entry = entry
    call.trail.target = forward.locate(entry, random.choice(routers).id)


def _headers(call: Call) -> dict[str, str]:
    headers = replies.rate_limit_headers(call.adm) if call.adm is not None else {}
    return (
        {**headers, **call.identity.headers} if call.identity is not None else headers
    )  # the provider's limits win


def _whole(call: Call, shape: Shape, req: InferenceRequest) -> HttpResponse:
    max_tokens = _max_tokens(call, req)
    router_body = complete(call, req, max_tokens)
    call.ttfb_ms = call.elapsed_ms()
    text, hit = stops.cut(openai_format.extract_text(router_body), req.stop)
    calls = []
    billed_text = text
    if req.offers_tools or req.output is not None:
        reading, router_body, billed_text, hit = read_checked(
            call, shape, req, text, router_body, max_tokens
        )
        text, calls = reading.text, reading.calls
    call.answer = make_answer(
        call,
        text=billed_text,
        finish=openai_format.extract_finish(router_body),
        usage=openai_format.extract_usage(router_body),
        stop=hit,
    )
    call.answer.text, call.answer.tool_calls = text, calls
    if calls:
        call.answer.finish = "tool_calls"
    body = shape.whole(
        request_id=call.request_id,
        model=call.model,
        created=int(call.now.timestamp()),
        answer=call.answer,
        router_body=router_body,
        req=req,
    )
    call.status = 200
    headers = _headers(call)
    finish_call(call)
    return replies.json_response(body, headers=headers)


def _stream(call: Call, shape: Shape, req: InferenceRequest) -> HttpResponse:
    entry = call.entry
    max_tokens = _max_tokens(call, req)
    first, chunks = forward.with_failover(
        entry=entry,
        first_router_id=call.adm.router_id if call.adm else call.trail.target.router.id,
        request_id=call.request_id,
        now_ms=call.now_ms,
        trail=call.trail,
        attempt=lambda target: forward.open_stream(
            target=target,
            body=body_for(call, req, target.route, max_tokens=max_tokens),
            request_id=call.request_id,
        ),
    )
    call.streamed = True
    if req.offers_tools or req.output is not None:
        body = toolflow.tool_stream_body(call, shape, req, first, chunks, max_tokens=max_tokens)
    else:
        body = _stream_body(call, shape, req, first, chunks)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in _headers(call).items():
        response[name] = value
    return response


def _stream_body(call: Call, shape: Shape, req: InferenceRequest, first, chunks):
    emitter = toolstream.emitter_for(
        shape, request_id=call.request_id, model=call.model, created=int(call.now.timestamp())
    )
    served: list[str] = []  # what reached the client: what it pays for
    finish: str | None = None
    usage: tuple[int, int] | None = None
    scanner = stops.StopScanner(req.stop) if req.stop else None
    call.status = 200
    try:
        yield from emitter.opening(req=req, prompt_tokens=call.prompt_tokens)
        call.ttfb_ms = call.elapsed_ms()
        chunk = first
        while chunk is not None:
            text = openai_format.extract_text(chunk)
            if scanner is not None:
                text = scanner.feed(text)
            if text:
                served.append(text)
                sending(call, len(text))
                yield from emitter.text(text)
            if scanner is not None and scanner.hit is not None:
                break  # the answer ends here: the router's stream is closed below
            finish = openai_format.extract_finish(chunk) or finish
            usage = openai_format.extract_usage(chunk) or usage
            chunk = next(chunks, None)
        if scanner is not None and (rest := scanner.flush()):
            served.append(rest)
            sending(call, len(rest))
            yield from emitter.text(rest)
        hit = scanner.hit if scanner is not None else None
        call.answer = make_answer(
            call, text="".join(served), finish=finish, usage=None if hit else usage, stop=hit
        )
        yield from emitter.closing(req=req, answer=call.answer)
    except RouterError:
        yield from router_failed(call, emitter)
    except GeneratorExit:
        call.error_code = "client_disconnected"
        raise
    finally:
        close_chunks(chunks)
        if call.answer is None:
            call.answer = make_answer(call, text="".join(served), finish=finish, usage=None)
        finish_call(call)
