"""One /v1 request as it goes through the flow (`Call`), the answer the client is billed
for, and the end every request reaches exactly once: the reservation settled and the
request log (+ usage event) written durably."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from apikeys.authcontext import AuthContext
from apikeys.providers import KeyIdentity
from gateway import degraded, forward, junk, leases, limits, openai_format, tokens
from gateway.budget import Budget
from gateway.protocols import Answer
from gateway.tokens import estimate_tokens, tokens_for_chars
from infra import metrics
from metering.pricing import price_micro_usd
from metering.services import RequestRecord, request_record
from pools.catalog import ModelEntry

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
    budget: Budget | None = None  # the request's tokens on its model, planned at admission
    est_tokens: int = 0
    est_cost: int = 0  # the worst-case cost a key's budget reserved (micro-USD; 0: none)
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
    serving: bool = False  # a stream whose content has begun to go out (its bill is in fast state)
    sent_chars: int = 0  # the characters of content (text, call arguments) the client was sent
    degraded: limits.Admission | None = None  # admitted without fast state (gateway/degraded.py)
    unlogged: bool = False  # refused as junk (gateway/junk.py): counted, sampled, no row
    max_tokens: int = 0  # the max_tokens the router was sent (0: none yet)
    router_prompt: str | list[dict] | None = None  # the prompt it was sent: text or chat messages
    usage_capped: bool = False  # the router claimed more tokens than billing allows
    # An answer asked again (gateway/toolflow.py): its prompt, which carries the discarded
    # answer and the correction, is billed at most what the client's own prompt was.
    prompt_cap: int | None = None

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000) + self.elapsed_ms()


def make_answer(
    call: Call,
    *,
    text: str,
    finish: str | None,
    usage: tuple[int, int] | None,
    stop: str | None = None,
) -> Answer:
    """The answer as the client gets it. Cut at a stop sequence (`stop`), it ended with
    "stop", and the client pays for the text it got: the router's count, if it reported
    one, covers text after the cut, so the estimate of what was sent counts, capped by it.

    A router's usage is a claim: it is billed at most what was asked and sent (`bounded`).
    An answer that was asked again is billed at most the client's own prompt
    (`call.prompt_cap`); the rest of its prompt is recorded as unbilled."""
    if stop is not None:
        finish = "stop"
        if usage is not None:
            usage = (usage[0], min(usage[1], estimate_tokens(text)))
            call.estimated = True
    if usage is not None:
        usage = bounded(call, usage, text)
    if usage is None:
        call.estimated = True
        usage = (call.prompt_tokens, sent_tokens(call, estimate_tokens(text)))
    if call.prompt_cap is not None and usage[0] > call.prompt_cap:
        call.unbilled_tokens += usage[0] - call.prompt_cap
        usage = (call.prompt_cap, usage[1])
    return Answer(
        text=text,
        finish=openai_format.normalize_finish(finish) if finish else None,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        stop_sequence=stop,
    )


def sent_tokens(call: Call, estimate: int) -> int:
    """An estimate of completion tokens sent, billed at most the max_tokens the router was
    asked for (a router that ignores it is not paid for the excess)."""
    return min(estimate, call.max_tokens) if call.max_tokens else estimate


def bounded(call: Call, usage: tuple[int, int], text: str) -> tuple[int, int]:
    """A router's (prompt, completion) claim, billed at most: completion tokens, the
    max_tokens it was sent and `tokens.ceiling` of the answer's text; prompt tokens,
    `tokens.prompt_ceiling` of the prompt it was sent (gateway/tokens.py). A claim cut
    down flags the request (`usage_capped`, on its usage event) and is counted per router."""
    prompt, completion = usage
    billed_completion = tokens.capped(completion, text)
    if call.max_tokens:
        billed_completion = min(billed_completion, call.max_tokens)
    billed_prompt = (
        tokens.capped(prompt, call.router_prompt) if call.router_prompt is not None else prompt
    )
    if (billed_prompt, billed_completion) == (prompt, completion):
        return usage
    call.usage_capped = True
    router_id = call.trail.target.router.id if call.trail.target else None
    metrics.usage_capped(router_id)
    logger.warning(
        "router over-reported usage: claimed %s prompt + %s completion tokens, billed %s + %s",
        prompt,
        completion,
        billed_prompt,
        billed_completion,
        extra={"request_id": call.request_id, "router_id": router_id},
    )
    return billed_prompt, billed_completion


def body_for(call: Call, req, route, *, max_tokens: int) -> dict:
    """The body for `route`'s router (`forward.router_body`); the request keeps what it
    asks and sends, the bounds of what the router's usage may claim (`bounded`)."""
    body = forward.router_body(req, route, max_tokens=max_tokens)
    call.max_tokens = max_tokens
    call.router_prompt = body.get("prompt", body.get("messages"))
    return body


def hold_reservation(call: Call, adm: limits.Admission) -> None:
    """The request holds a reservation from here on: its leases are renewed until it ends."""
    call.adm = adm
    leases.hold(call)


def sending(call: Call, chars: int) -> None:
    """`chars` characters of content are about to go to a stream's client. Before the
    first, the request's bill goes to fast state, so it is billed if this process dies."""
    if not call.serving:
        call.serving = True
        if call.adm is not None:
            leases.serving(call)
    call.sent_chars += chars


def abandon(call: Call, code: str) -> None:
    """End a request this process cannot finish (it is being stopped): settle and record
    it as it stands, billed for what its client was sent."""
    if call.finished:
        return
    call.error_code = call.error_code or code
    if call.answer is None:
        call.estimated = True
        sent = sent_tokens(call, tokens_for_chars(call.sent_chars))
        call.answer = Answer(
            text="",
            finish=None,
            prompt_tokens=call.prompt_tokens if sent else 0,
            completion_tokens=sent,
        )
    finish_call(call)


def finish_call(call: Call) -> None:
    """Settle the reservation and write the request durably; exactly once per request.

    The settlement is sent to Redis first and its reply read after the Postgres write,
    so the two round trips overlap."""
    if call.finished:
        return
    call.finished = True
    leases.drop(call)
    answer = call.answer
    served_tokens = (
        (answer.prompt_tokens + answer.completion_tokens)
        if answer and (answer.completion_tokens or answer.text)
        else 0
    )
    settling = None
    if call.degraded is not None:
        degraded.release(call.degraded.ctx)
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
                reserved_cost=call.est_cost,
                actual_cost=_cost(call) if served_tokens and call.est_cost else 0,
            )
    except Exception:
        logger.exception("settlement failed", extra={"request_id": call.request_id})
    try:
        _record(call, served_tokens)
    finally:
        if settling is not None:
            try:
                if not settling.wait():
                    logger.warning(
                        "request was reaped before it settled (its process stalled past its lease)",
                        extra={"request_id": call.request_id},
                    )
            except Exception:
                logger.exception("settlement failed", extra={"request_id": call.request_id})


def _cost(call: Call) -> int:
    """What the request is billed (the usage event's cost, metering.pricing's rule)."""
    entry, answer = call.entry, call.answer
    if entry is None or answer is None:
        return 0
    return price_micro_usd(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        input_per_mtok=entry.input_price_per_mtok,
        output_per_mtok=entry.output_price_per_mtok,
    )


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
    if call.unlogged and settings.GATEWAY_ENFORCEMENT:
        # Not a key we serve: nothing to bill or show anyone. Counted above, sampled in the
        # logs, never one row each (gateway/junk.py).
        junk.sample(
            request_id=call.request_id,
            code=call.error_code,
            client_ip=call.client_ip,
            endpoint=call.endpoint,
        )
        return
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
            usage_capped=call.usage_capped,
            input_per_mtok=entry.input_price_per_mtok if entry else 0,
            output_per_mtok=entry.output_price_per_mtok if entry else 0,
        )
    )
