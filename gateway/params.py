"""Which top-level request fields each endpoint honours, and which it refuses.

A field the Portal cannot honour is refused with 400 `unsupported_parameter` naming it,
never accepted and ignored: a client that asked for token probabilities, a seed or
extended thinking must learn it did not get them. `null` (and a field's neutral value,
such as `logprobs: false`) always passes. Unknown fields are refused the way OpenAI's
API refuses them ("Unrecognized request argument supplied").
"""

from __future__ import annotations

from typing import Any

from portal.errors import PortalError

_NO_PROBS = "routers return no token probabilities"

# field -> (is the value neutral?, why it cannot be honoured)
_Refusal = tuple  # (callable(value) -> bool, str)


def _false(value: Any) -> bool:
    return value is False


def _never(value: Any) -> bool:
    return False


def _one_of(*allowed: Any):
    return lambda value: value in allowed


def _empty(value: Any) -> bool:
    return value in ({}, [], "")


CHAT_HONOURED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "stream",
        "stream_options",
        "n",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        # Accepted without effect by their own definition: labels for stored completions (none
        # are stored), a cache-routing hint and an end-user id (kept like `user`).
        "metadata",
        "prompt_cache_key",
        "safety_identifier",
    }
)
CHAT_REFUSED: dict[str, _Refusal] = {
    "logprobs": (_false, _NO_PROBS),
    "top_logprobs": (_never, _NO_PROBS),
    "logit_bias": (_empty, "routers take no token biases"),
    "seed": (_never, "routers offer no reproducible sampling"),
    "store": (_false, "the Portal stores no prompts or completions"),
    "service_tier": (_one_of("auto", "default"), "there is one service tier"),
    "modalities": (_one_of(["text"]), "only text output is supported"),
    "audio": (_never, "only text output is supported"),
    "prediction": (_never, "predicted outputs are not supported"),
    "web_search_options": (_never, "web search is not supported"),
    "reasoning_effort": (_never, "the reasoning effort cannot be set for these models"),
    "verbosity": (_never, "verbosity cannot be set for these models"),
    "functions": (_never, "the legacy `functions` API is not supported; use `tools`"),
    "function_call": (_never, "the legacy `function_call` is not supported; use `tool_choice`"),
}

COMPLETION_HONOURED = frozenset(
    {
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "stream",
        "stream_options",
        "n",
        "user",
    }
)
COMPLETION_REFUSED: dict[str, _Refusal] = {
    "logprobs": (_one_of(0, False), _NO_PROBS),
    "echo": (_false, "echoing the prompt is not supported"),
    "best_of": (_one_of(1), "only best_of=1 is supported"),
    "suffix": (_empty, "suffixes (insertion) are not supported"),
    "logit_bias": (_empty, "routers take no token biases"),
    "seed": (_never, "routers offer no reproducible sampling"),
}

MESSAGES_HONOURED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
    }
)
MESSAGES_REFUSED: dict[str, _Refusal] = {
    "thinking": (
        lambda v: isinstance(v, dict) and v.get("type") == "disabled",
        "extended thinking is not supported",
    ),
    "service_tier": (_one_of("auto", "standard_only"), "there is one service tier"),
    "container": (_never, "containers are not supported"),
    "mcp_servers": (_never, "MCP servers are not supported"),
    "context_management": (_never, "context management is not supported"),
}

RESPONSES_HONOURED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "user",
        "metadata",
        "prompt_cache_key",
        "safety_identifier",
        # Accepted and ignored, by decision: nothing is ever stored, whatever `store` says.
        "store",
    }
)
RESPONSES_REFUSED: dict[str, _Refusal] = {
    "previous_response_id": (
        _never,
        "responses are not stored, so they cannot be continued; send the whole conversation in `input`",
    ),
    "conversation": (
        _never,
        "conversations are not stored; send the whole conversation in `input`",
    ),
    "background": (_false, "background responses are not supported"),
    "include": (_empty, "no extra output items are available"),
    "reasoning": (_never, "reasoning settings cannot be set for these models"),
    "top_logprobs": (_never, _NO_PROBS),
    "max_tool_calls": (_never, "a cap on tool calls is not supported"),
    "service_tier": (_one_of("auto", "default"), "there is one service tier"),
    "truncation": (_one_of("disabled"), "automatic truncation is not supported"),
    "prompt": (_never, "stored prompt templates are not supported"),
    "stream_options": (_never, "stream options are not supported on /v1/responses"),
}


def check_fields(body: dict, *, honoured: frozenset[str], refused: dict[str, _Refusal]) -> None:
    """Raise 400 `unsupported_parameter` for the first field that cannot be honoured."""
    for name, value in body.items():
        if name in honoured or value is None:
            continue
        rule = refused.get(name)
        if rule is None:
            raise PortalError(
                "unsupported_parameter",
                f"Unrecognized request argument supplied: {name}",
                param=name,
            )
        neutral, why = rule
        if not neutral(value):
            raise PortalError(
                "unsupported_parameter", f"{name} is not supported: {why}.", param=name
            )
