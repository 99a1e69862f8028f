"""Answers read against what the request asked for: tool calls and JSON outputs, whole or
streamed, a violation sent back to the model once (gateway/outputs.py reads; this module
decides what reaches the client and what is billed)."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings

from gateway import forward, openai_format, outputs, stops, toolcalls, toolstream
from gateway.calls import Call, body_for, bounded, finish_call, make_answer, sending
from gateway.conversation import AUTO as AUTO_CHOICE
from gateway.protocols import Shape
from gateway.tokens import estimate_tokens
from gateway.validation import InferenceRequest
from pools.client import RouterError
from portal.errors import PortalError


def complete(call: Call, req: InferenceRequest, max_tokens: int) -> dict:
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
            body=body_for(call, req, target.route, max_tokens=max_tokens),
            request_id=call.request_id,
        ),
    )


def template_of(call: Call) -> str:
    """The prompt family of the route that answered (OpenAI-style routes get chatml's syntax)."""
    route = call.trail.target.route
    return "chatml" if route.api_style == "openai" else route.template


def read_checked(
    call: Call, shape: Shape, req: InferenceRequest, text: str, router_body: dict, max_tokens: int
):
    """Read an answer against the request's tools and output format; a violation is sent
    back to the model once more (GATEWAY_OUTPUT_RETRIES) with what was wrong, then refused
    with 502 `invalid_model_output`. The client pays only for the answer it gets: the tokens
    of a discarded answer are recorded on the request log as unbilled.

    The answer used is billed at most the prompt of the client's own request: what the
    retry adds to the prompt (the discarded answer, the correction) is recorded as unbilled
    too, so the request never costs more than admission reserved for it (a key's budget).

    Returns (reading, the router body of the answer used, its raw text, the stop sequence hit)."""
    hit = None
    reading = outputs.read(text, req, template=template_of(call), id_prefix=shape.call_id_prefix)
    for _ in range(settings.GATEWAY_OUTPUT_RETRIES):
        if reading.problem is None:
            break
        prompt, completion = _attempt_tokens(call, router_body, text)
        call.unbilled_tokens += prompt + completion
        if call.prompt_cap is None:
            call.prompt_cap = prompt  # the client's own prompt, as this first attempt billed it
        retry = replace(
            req,
            stream=False,
            messages=[
                *req.messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": outputs.correction(reading.problem)},
            ],
        )
        router_body = complete(call, retry, max_tokens)
        text, hit = stops.cut(openai_format.extract_text(router_body), req.stop)
        reading = outputs.read(
            text, req, template=template_of(call), id_prefix=shape.call_id_prefix
        )
    if reading.problem is not None:
        call.unbilled_tokens += sum(_attempt_tokens(call, router_body, text))
        raise PortalError(
            "invalid_model_output", f"The model's answer could not be used: {reading.problem}."
        )
    return reading, router_body, text, hit


def _attempt_tokens(call: Call, router_body: dict, text: str) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer, as it would be billed."""
    usage = openai_format.extract_usage(router_body)
    return bounded(call, usage, text) if usage else (call.prompt_tokens, estimate_tokens(text))


def tool_stream_body(
    call: Call, shape: Shape, req: InferenceRequest, first, chunks, *, max_tokens: int
):
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
    scanner = toolcalls.CallScanner(toolcalls.syntax_for(template_of(call))) if live else None
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
        return (yield from _emit(call, emitter, req, shape, out, found, sent, calls))

    try:
        yield from emitter.opening(req=req, prompt_tokens=call.prompt_tokens)
        call.ttfb_ms = call.elapsed_ms()
        chunk = first
        while chunk is not None:
            text = openai_format.extract_text(chunk)
            if stop_scanner is not None:
                text = stop_scanner.feed(text)
            if text:
                problem = (yield from take(text)) or problem
            if problem is not None or (stop_scanner is not None and stop_scanner.hit is not None):
                break
            finish = openai_format.extract_finish(chunk) or finish
            usage = openai_format.extract_usage(chunk) or usage
            chunk = next(chunks, None)
        if stop_scanner is not None:
            hit = stop_scanner.hit
            if problem is None and (rest := stop_scanner.flush()):
                problem = (yield from take(rest)) or problem
        if scanner is not None and problem is None:
            out, found = scanner.flush()
            problem = yield from _emit(call, emitter, req, shape, out, found, sent, calls)
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
            reading, router_body, text, retry_hit = read_checked(
                call, shape, req, text, router_body, max_tokens
            )
            if text != "".join(raw):
                hit = retry_hit
            raw, usage = [text], openai_format.extract_usage(router_body)
            finish = openai_format.extract_finish(router_body) or finish
            if reading.text:
                sent.append(reading.text)
                sending(call, len(reading.text))
                yield from emitter.text(reading.text)
            calls = reading.calls
            if calls:
                sending(call, sum(len(c.arguments) for c in calls))
            yield from emitter.calls(calls)
        call.answer = make_answer(
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
        yield from router_failed(call, emitter)
    except GeneratorExit:
        call.error_code = "client_disconnected"
        raise
    finally:
        close_chunks(chunks)
        if call.answer is None:
            # Cut short: the client pays for what it received, calls included.
            call.answer = make_answer(
                call,
                text="".join(sent) + "".join(c.arguments for c in calls),
                finish=finish,
                usage=None,
            )
        finish_call(call)


def _emit(
    call: Call,
    emitter,
    req: InferenceRequest,
    shape: Shape,
    out: str,
    found,
    sent: list,
    calls: list,
):
    """Send scanned text and checked calls; returns the problem of a bad call, if any."""
    if out:
        sent.append(out)
        sending(call, len(out))
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
    sending(call, sum(len(c.arguments) for c in checked))
    yield from emitter.calls(checked)
    return None


def router_failed(call: Call, emitter):
    """A router failure after the stream began: one error event, the answer incomplete."""
    call.trail.outcome, call.error_code = "fail", "upstream_error"
    yield from emitter.failure(
        message="The model backend failed while streaming; the answer is incomplete.",
        code="upstream_error",
        type_="api_error",
    )


def close_chunks(chunks) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
