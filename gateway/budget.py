"""Token budgets: a request's prompt, the output it may produce, and the model's context
window, decided before admission reserves anything.

The prompt is counted as the routers will see it: chat rendered through each serving
route's template (the largest estimate wins), a text prompt as sent. Counts are
`gateway.tokens.estimate_tokens` estimates, not a model's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import forward
from gateway.tokens import estimate_tokens, prompt_ceiling
from gateway.validation import InferenceRequest
from metering.pricing import price_micro_usd
from pools.catalog import ModelEntry
from portal.errors import PortalError

# The admission status of a request that cannot fit the model (gateway/lua/admit.lua).
CONTEXT_LENGTH = "context_length"


@dataclass(frozen=True, slots=True)
class Budget:
    """prompt: estimated prompt tokens; completion: the max_tokens sent to the router
    (the client's, capped at the model's max output, or by default what the model can
    still produce); window: the model's context window."""

    prompt: int
    completion: int
    window: int
    requested: bool  # the client set max_tokens

    @property
    def total(self) -> int:
        """The request's worst case: what admission reserves against limits and allowance."""
        return self.prompt + self.completion

    @property
    def fits(self) -> bool:
        return self.completion > 0 and self.total <= self.window


def prompt_tokens(req: InferenceRequest, entry: ModelEntry, *, raw_estimate: int) -> int:
    """The prompt as the routers will see it. Templates add tokens the router bills, so
    the reservation and the window check count them too; routes that take chat messages
    themselves (`api_style` openai) count the messages' text (`raw_estimate`)."""
    if req.kind == "completion":
        return raw_estimate
    rendered = [
        estimate_tokens(forward.router_body(req, route, max_tokens=1)["prompt"])
        for route in entry.serving_routes()
        if route.api_style != "openai"
    ]
    return max([raw_estimate, *rendered])


def prompt_bound(req: InferenceRequest, entry: ModelEntry, *, estimate: int) -> int:
    """The most prompt tokens any serving route's router may bill for this request
    (`tokens.prompt_ceiling` of the prompt as each route is sent it, and at least the
    estimate billed when a router reports no usage): a key's budget reserves with it, so
    settling never costs more than was reserved."""
    bounds = [estimate]
    for route in entry.serving_routes():
        body = forward.router_body(req, route, max_tokens=1)
        bounds.append(prompt_ceiling(body.get("prompt", body.get("messages"))))
    return max(bounds)


def worst_cost(entry: ModelEntry, *, prompt_bound: int, completion: int) -> int:
    """The request's worst-case cost in micro-USD (metering.pricing's rule)."""
    return price_micro_usd(
        prompt_tokens=prompt_bound,
        completion_tokens=completion,
        input_per_mtok=entry.input_price_per_mtok,
        output_per_mtok=entry.output_price_per_mtok,
    )


def plan(req: InferenceRequest, entry: ModelEntry, *, prompt_tokens: int) -> Budget:
    """The request's budget on `entry`. Without max_tokens the answer may use what the
    model can still produce: min(max output, context window - prompt)."""
    if req.max_tokens is None:
        completion = min(entry.max_output_tokens, entry.context_window - prompt_tokens)
    else:
        completion = min(req.max_tokens, entry.max_output_tokens)
    return Budget(
        prompt=prompt_tokens,
        completion=completion,
        window=entry.context_window,
        requested=req.max_tokens is not None,
    )


def context_length_error(budget: Budget, *, kind: str) -> PortalError:
    """400 `context_length_exceeded` in OpenAI's words; `param` is the prompt's field."""
    noun = {"completion": "prompt", "responses": "input"}.get(kind, "messages")
    limit = f"This model's maximum context length is {budget.window} tokens."
    if budget.requested:
        message = (
            f"{limit} However, you requested {budget.total} tokens ({budget.prompt} in the {noun},"
            f" {budget.completion} in the completion). Please reduce the length of the {noun} or completion."
        )
    else:
        message = (
            f"{limit} However, your {noun} resulted in {budget.prompt} tokens, which leaves no room"
            f" for the completion. Please reduce the length of the {noun}."
        )
    return PortalError("context_length_exceeded", message, param=noun)
