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
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from apikeys.authcontext import AuthContext
from apikeys.providers import KeyIdentity, get_provider
from gateway import (
    admission,
    answers,
    budget,
    forward,
    limits,
    outputs,
    shaping,
    stops,
    toolcalls,
    toolstream,
)
from gateway.conversation import AUTO as AUTO_CHOICE
from gateway.shapes import Answer, Shape
from gateway.tokens import estimate_tokens
from gateway.validation import InferenceRequest, parse_json_body
from metering.services import RequestRecord, request_record
from pools.catalog import ModelEntry
from pools.client import RouterError
from portal import metrics
from portal.errors import PortalError
from portal.pgpool.base import release_pooled

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Call:
    """Everything one request accumulates on its way through the flow."""

    request_id: str
    endpoint: str
    started: float
    now: datetime
    client_ip: str | None
    model: str = ""
    adm: limits.Admission | None = None  # set once admitted: a reservation to settle
    ctx: AuthContext | None = None  # the key's auth context, when the key was known
    identity: KeyIdentity | None = None  # who the key provider says the key is
    entry: ModelEntry | None = None
    est_tokens: int = 0
    prompt_tokens: int = 0
    trail: forward.Trail = field(default_factory=forward.Trail)
    status: int = 0
    error_code: str = ""
    ttfb_ms: int | None = None
    streamed: bool = False
    answer: Answer | None = None
    estimated: bool = False
    finished: bool = False
    unbilled_tokens: int = 0  # router tokens of answers thrown away and asked again (not billed)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000) + self.elapsed_ms()


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


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def serve(request, shape: Shape) -> HttpResponse:
    call = Call(
        request_id=request.request_id,
        endpoint=shape.endpoint,
        started=time.perf_counter(),
        now=timezone.now(),
        client_ip=_client_ip(request),
    )
    try:
        secret = api_key_from(request)
        req = shape.parse(read_body(request))
        call.model = req.model
        call.prompt_tokens = estimate_tokens(_prompt_text(req))
        if settings.GATEWAY_ENFORCEMENT:
            _admit(call, identity=get_provider().authenticate(secret), req=req)
        else:
            _admit_unenforced(call, req=req)
        release_pooled()  # a cold admission read Postgres: not held through the router call
        if req.stream:
            return _stream(call, shape, req)
        return _whole(call, shape, req)
    except PortalError as err:
        call.status, call.error_code = err.status, err.code
        _finish(call)
        return answers.error_response(err, style=shape.style)
    except Exception:
        logger.exception("gateway failure", extra={"request_id": call.request_id})
        call.status, call.error_code = 500, "internal_error"
        _finish(call)
        return answers.error_response(PortalError("internal_error"), style=shape.style)


def _max_tokens(req: InferenceRequest, entry: ModelEntry) -> int:
    """The max_tokens sent to the router: the client's, capped at the model's max output,
    or what the model can still produce after the prompt (the budget admission reserved)."""
    if req.max_tokens is not None:
        return min(req.max_tokens, entry.max_output_tokens)
    prompt = _prompt_tokens(req, entry, raw_estimate=estimate_tokens(_prompt_text(req)))
    return max(1, budget.plan(req, entry, prompt_tokens=prompt).completion)


def _prompt_tokens(req: InferenceRequest, entry: ModelEntry, *, raw_estimate: int) -> int:
    return budget.prompt_tokens(req, entry, raw_estimate=raw_estimate)


def _admit(call: Call, *, identity: KeyIdentity, req: InferenceRequest) -> None:
    """Admission (gateway/admission.py) with the request's budget on the resolved model: a
    request that cannot fit its context window is refused once the key may use the model,
    before anything is reserved."""
    call.identity = identity
    planned: list[budget.Budget | None] = [None]

    def estimate(entry: ModelEntry | None) -> int:
        if entry is None:
            planned[0] = None
            return 0
        call.prompt_tokens = _prompt_tokens(req, entry, raw_estimate=call.prompt_tokens)
        planned[0] = budget.plan(req, entry, prompt_tokens=call.prompt_tokens)
        return planned[0].total

    def refuse(entry: ModelEntry | None) -> str:
        return budget.CONTEXT_LENGTH if planned[0] is not None and not planned[0].fits else ""

    admitted = admission.admit(
        identity=identity,
        request_id=call.request_id,
        model=req.model,
        estimate=estimate,
        refuse=refuse,
        now=call.now,
    )
    call.ctx, call.entry = admitted.adm.ctx, admitted.entry
    if admitted.adm.status != "ok":
        raise answers.refusal(admitted.adm, model=req.model, budget=planned[0], kind=req.kind)
    call.est_tokens = planned[0].total
    call.adm = admitted.adm  # from here on the request holds a reservation to settle


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
    headers = answers.rate_limit_headers(call.adm) if call.adm is not None else {}
    return (
        {**headers, **call.identity.headers} if call.identity is not None else headers
    )  # the provider's limits win


def _complete(call: Call, req: InferenceRequest, max_tokens: int) -> dict:
    """One whole answer from a router of the admitted route, failing over while it may."""
    target = call.trail.target
    return forward.with_failover(
        entry=call.entry,
        first_router_id=target.router.id if target else call.adm.router_id,
        request_id=call.request_id,
        now_ms=call.now_ms,
        trail=call.trail,
        attempt=lambda target: forward.complete(
            target=target,
            body=forward.router_body(req, target.route, max_tokens=max_tokens),
            request_id=call.request_id,
        ),
    )


def _whole(call: Call, shape: Shape, req: InferenceRequest) -> HttpResponse:
    max_tokens = _max_tokens(req, call.entry)
    router_body = _complete(call, req, max_tokens)
    call.ttfb_ms = call.elapsed_ms()
    text, hit = stops.cut(shaping.extract_text(router_body), req.stop)
    calls = []
    billed_text = text
    if req.offers_tools or req.output is not None:
        reading, router_body, billed_text, hit = _read_checked(
            call, shape, req, text, router_body, max_tokens
        )
        text, calls = reading.text, reading.calls
    call.answer = _answer(
        call,
        text=billed_text,
        finish=shaping.extract_finish(router_body),
        usage=shaping.extract_usage(router_body),
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
    _finish(call)
    return answers.json_response(body, headers=headers)


def _template(call: Call) -> str:
    """The prompt family of the route that answered (OpenAI-style routes get chatml's syntax)."""
    route = call.trail.target.route
    return "chatml" if route.api_style == "openai" else route.template


def _read_checked(
    call: Call, shape: Shape, req: InferenceRequest, text: str, router_body: dict, max_tokens: int
):
    """Read an answer against the request's tools and output format; a violation is sent
    back to the model once more (GATEWAY_OUTPUT_RETRIES) with what was wrong, then refused
    with 502 `invalid_model_output`. The client pays only for the answer it gets: the tokens
    of a discarded answer are recorded on the request log as unbilled.

    Returns (reading, the router body of the answer used, its raw text, the stop sequence hit)."""
    hit = None
    reading = outputs.read(text, req, template=_template(call), id_prefix=shape.call_id_prefix)
    for _ in range(settings.GATEWAY_OUTPUT_RETRIES):
        if reading.problem is None:
            break
        call.unbilled_tokens += _attempt_tokens(call, router_body, text)
        retry = replace(
            req,
            stream=False,
            messages=[
                *req.messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": outputs.correction(reading.problem)},
            ],
        )
        router_body = _complete(call, retry, max_tokens)
        text, hit = stops.cut(shaping.extract_text(router_body), req.stop)
        reading = outputs.read(text, req, template=_template(call), id_prefix=shape.call_id_prefix)
    if reading.problem is not None:
        call.unbilled_tokens += _attempt_tokens(call, router_body, text)
        raise PortalError(
            "invalid_model_output", f"The model's answer could not be used: {reading.problem}."
        )
    return reading, router_body, text, hit


def _attempt_tokens(call: Call, router_body: dict, text: str) -> int:
    usage = shaping.extract_usage(router_body)
    return sum(usage) if usage else call.prompt_tokens + estimate_tokens(text)


def _answer(
    call: Call,
    *,
    text: str,
    finish: str | None,
    usage: tuple[int, int] | None,
    stop: str | None = None,
) -> Answer:
    """The answer as the client gets it. Cut at a stop sequence (`stop`), it ended with
    "stop", and the client pays for the text it got: the router's count, if it reported
    one, covers text after the cut, so the estimate of what was sent counts, capped by it."""
    if stop is not None:
        finish = "stop"
        if usage is not None:
            usage = (usage[0], min(usage[1], estimate_tokens(text)))
            call.estimated = True
    if usage is None:
        call.estimated = True
        usage = (call.prompt_tokens, estimate_tokens(text))
    return Answer(
        text=text,
        finish=shaping.normalize_finish(finish) if finish else None,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        stop_sequence=stop,
    )


def _stream(call: Call, shape: Shape, req: InferenceRequest) -> HttpResponse:
    entry = call.entry
    max_tokens = _max_tokens(req, entry)
    first, chunks = forward.with_failover(
        entry=entry,
        first_router_id=call.adm.router_id if call.adm else call.trail.target.router.id,
        request_id=call.request_id,
        now_ms=call.now_ms,
        trail=call.trail,
        attempt=lambda target: forward.open_stream(
            target=target,
            body=forward.router_body(req, target.route, max_tokens=max_tokens),
            request_id=call.request_id,
        ),
    )
    call.streamed = True
    body = _tool_stream_body if req.offers_tools or req.output is not None else _stream_body
    response = StreamingHttpResponse(
        body(call, shape, req, first, chunks), content_type="text/event-stream"
    )
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
            text = shaping.extract_text(chunk)
            if scanner is not None:
                text = scanner.feed(text)
            if text:
                served.append(text)
                yield from emitter.text(text)
            if scanner is not None and scanner.hit is not None:
                break  # the answer ends here: the router's stream is closed below
            finish = shaping.extract_finish(chunk) or finish
            usage = shaping.extract_usage(chunk) or usage
            chunk = next(chunks, None)
        if scanner is not None and (rest := scanner.flush()):
            served.append(rest)
            yield from emitter.text(rest)
        hit = scanner.hit if scanner is not None else None
        call.answer = _answer(
            call, text="".join(served), finish=finish, usage=None if hit else usage, stop=hit
        )
        yield from emitter.closing(req=req, answer=call.answer)
    except RouterError:
        yield from _router_failed(call, emitter)
    except GeneratorExit:
        call.error_code = "client_disconnected"
        raise
    finally:
        _close(chunks)
        if call.answer is None:
            call.answer = _answer(call, text="".join(served), finish=finish, usage=None)
        _finish(call)


def _router_failed(call: Call, emitter):
    """A router failure after the stream began: one error event, the answer incomplete."""
    call.trail.outcome, call.error_code = "fail", "upstream_error"
    yield from emitter.failure(
        message="The model backend failed while streaming; the answer is incomplete.",
        code="upstream_error",
        type_="api_error",
    )


def _close(chunks) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _tool_stream_body(call: Call, shape: Shape, req: InferenceRequest, first, chunks):
    """A stream that may carry tool calls or must be a JSON object.

    With `tool_choice` auto, text reaches the client as it comes, holding back only what
    could begin a call marker; each call goes out once complete and checked. An answer
    that must call a tool or be JSON is read whole first (a violation can then be sent
    back to the model once, as for whole answers), then sent; so is one whose first
    call was malformed before anything went out. A violation found after text already
    went out ends the stream with an `invalid_model_output` error event.
    """
    emitter = toolstream.emitter_for(
        shape, request_id=call.request_id, model=call.model, created=int(call.now.timestamp())
    )
    stop_scanner = stops.StopScanner(req.stop) if req.stop else None
    live = req.offers_tools and not (req.output is not None or req.tool_choice.forces_call)
    scanner = toolcalls.CallScanner(toolcalls.syntax_for(_template(call))) if live else None
    raw: list[str] = []  # the model's text (after stop sequences)
    sent: list[str] = []  # the text the client got
    calls: list = []
    finish: str | None = None
    usage: tuple[int, int] | None = None
    problem: str | None = None
    hit: str | None = None
    call.status = 200

    def take(text: str):
        raw.append(text)
        if scanner is None or problem is not None:
            return None
        out, found = scanner.feed(text)
        return (yield from _emit(emitter, req, shape, out, found, sent, calls))

    try:
        yield from emitter.opening(req=req, prompt_tokens=call.prompt_tokens)
        call.ttfb_ms = call.elapsed_ms()
        chunk = first
        while chunk is not None:
            text = shaping.extract_text(chunk)
            if stop_scanner is not None:
                text = stop_scanner.feed(text)
            if text:
                problem = (yield from take(text)) or problem
            if problem is not None or (stop_scanner is not None and stop_scanner.hit is not None):
                break
            finish = shaping.extract_finish(chunk) or finish
            usage = shaping.extract_usage(chunk) or usage
            chunk = next(chunks, None)
        if stop_scanner is not None:
            hit = stop_scanner.hit
            if problem is None and (rest := stop_scanner.flush()):
                problem = (yield from take(rest)) or problem
        if scanner is not None and problem is None:
            out, found = scanner.flush()
            problem = yield from _emit(emitter, req, shape, out, found, sent, calls)
        if problem is not None and (sent or calls):
            raise PortalError(
                "invalid_model_output", f"The model's answer could not be used: {problem}."
            )
        if scanner is None or problem is not None:
            # Read whole: checked (and asked again once) before anything is sent.
            text = "".join(raw)
            router_body = {"choices": [{"text": text, "finish_reason": finish}]}
            if usage is not None and hit is None:
                router_body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
            reading, router_body, text, retry_hit = _read_checked(
                call, shape, req, text, router_body, _max_tokens(req, call.entry)
            )
            if text != "".join(raw):
                hit = retry_hit
            raw, usage = [text], shaping.extract_usage(router_body)
            finish = shaping.extract_finish(router_body) or finish
            if reading.text:
                sent.append(reading.text)
                yield from emitter.text(reading.text)
            calls = reading.calls
            yield from emitter.calls(calls)
        call.answer = _answer(
            call, text="".join(raw), finish=finish, usage=None if hit else usage, stop=hit
        )
        call.answer.text, call.answer.tool_calls = "".join(sent), calls
        if calls:
            call.answer.finish = "tool_calls"
        yield from emitter.closing(req=req, answer=call.answer)
    except PortalError as err:
        call.error_code = err.code
        yield from emitter.failure(message=err.message, code=err.code, type_=err.type)
    except RouterError:
        yield from _router_failed(call, emitter)
    except GeneratorExit:
        call.error_code = "client_disconnected"
        raise
    finally:
        _close(chunks)
        if call.answer is None:
            # Cut short: the client pays for what it received, calls included.
            call.answer = _answer(
                call,
                text="".join(sent) + "".join(c.arguments for c in calls),
                finish=finish,
                usage=None,
            )
        _finish(call)


def _emit(emitter, req: InferenceRequest, shape: Shape, out: str, found, sent: list, calls: list):
    """Send scanned text and checked calls; returns the problem of a bad call, if any."""
    if out:
        sent.append(out)
        yield from emitter.text(out)
    if not found:
        return None
    checked, problem = outputs.check_calls(
        found, replace(req, tool_choice=AUTO_CHOICE), shape.call_id_prefix
    )
    if problem is None and not req.parallel_tool_calls and len(calls) + len(checked) > 1:
        problem = "the answer made more than one call but may make at most one (parallel_tool_calls is false)"
    if problem is not None:
        return problem
    calls.extend(checked)
    yield from emitter.calls(checked)
    return None


def _finish(call: Call) -> None:
    """Settle the reservation and write the request durably; exactly once per request.

    The settlement is sent to Redis first and its reply read after the Postgres write,
    so the two round trips overlap."""
    if call.finished:
        return
    call.finished = True
    answer = call.answer
    served_tokens = (
        (answer.prompt_tokens + answer.completion_tokens)
        if answer and (answer.completion_tokens or answer.text)
        else 0
    )
    settling = None
    try:
        if call.adm is not None:
            target = call.trail.target
            settling = limits.settle_begin(
                request_id=call.request_id,
                ctx=call.adm.ctx,
                router_id=target.router.id if target else None,
                router_outcome=call.trail.outcome,
                admitted_s=(int(call.now.timestamp() * 1000)) // 1000,
                est_tokens=call.est_tokens,
                actual_tokens=served_tokens,
                served=served_tokens > 0,
                now_ms=call.now_ms(),
            )
    except Exception:
        logger.exception("settlement failed", extra={"request_id": call.request_id})
    try:
        _record(call, served_tokens)
    finally:
        if settling is not None:
            try:
                settling.wait()
            except Exception:
                logger.exception("settlement failed", extra={"request_id": call.request_id})


def _record(call: Call, served_tokens: int) -> None:
    answer = call.answer
    ctx = call.ctx
    entry = call.entry
    trail = call.trail
    metrics.observe_request(
        endpoint=call.endpoint,
        model=entry.name if entry else "",
        status=call.status or 500,
        code=call.error_code,
        latency_ms=call.elapsed_ms(),
        ttfb_ms=call.ttfb_ms,
        tokens=served_tokens,
        failed_routers=[
            *trail.tried,
            *([trail.target.router.id] if trail.outcome == "fail" and trail.target else []),
        ],
    )
    request_record(
        record=RequestRecord(
            request_id=call.request_id,
            endpoint=call.endpoint,
            status_code=call.status or 500,
            latency_ms=call.elapsed_ms(),
            created_at=call.now,
            org_id=ctx.org_id if ctx else None,
            api_key_id=ctx.key_id if ctx else None,
            model_name=entry.name if entry else call.model[:100],
            route_id=trail.target.route.id if trail.target else None,
            router_id=trail.target.router.id if trail.target else None,
            error_code=call.error_code,
            ttfb_ms=call.ttfb_ms,
            streamed=call.streamed,
            client_ip=call.client_ip,
            prompt_tokens=answer.prompt_tokens if served_tokens else 0,
            completion_tokens=answer.completion_tokens if served_tokens else 0,
            unbilled_tokens=call.unbilled_tokens,
            estimated=call.estimated,
            input_per_mtok=entry.input_price_per_mtok if entry else 0,
            output_per_mtok=entry.output_price_per_mtok if entry else 0,
        )
    )
