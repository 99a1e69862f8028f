"""OpenAI response shapes built from a router's text-completion answer.

Routers answer OpenAI text completions (`choices[0].text`); clients of the chat route
get `chat.completion` objects and chunks. The `model` is always the public name the
client asked for, never the router's. Router bodies are untrusted: the `extract_*`
readers never raise on garbage.
"""

from __future__ import annotations

import time
from typing import Any

MAX_REPORTED_TOKENS = 100_000_000  # a router claiming more is broken, not busy


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def normalize_finish(reason: Any) -> str:
    """OpenAI's "stop", "length" or "tool_calls"; anything unknown counts as a natural stop."""
    if reason == "tool_calls":
        return reason
    return "length" if reason in ("length", "max_tokens") else "stop"


def tool_calls_list(calls) -> list[dict]:
    """OpenAI's `message.tool_calls`."""
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _first_choice(body: Any) -> dict | None:
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    choice = choices[0]
    return choice if isinstance(choice, dict) else None


def extract_text(router_chunk: Any) -> str:
    """The text of a router body or stream chunk; "" when it has none.

    Reads `choices[0].text` (text completions) and, for OpenAI-style routes,
    `choices[0].delta.content` or `choices[0].message.content`.
    """
    choice = _first_choice(router_chunk)
    if choice is None:
        return ""
    text = choice.get("text")
    if isinstance(text, str):
        return text
    for key in ("delta", "message"):
        inner = choice.get(key)
        if isinstance(inner, dict):
            content = inner.get("content")
            if isinstance(content, str):
                return content
    return ""


def extract_finish(router_chunk: Any) -> str | None:
    """Normalized finish reason of a router body or chunk, None while the text continues."""
    choice = _first_choice(router_chunk)
    if choice is None:
        return None
    reason = choice.get("finish_reason")
    return None if reason is None else normalize_finish(reason)


def _count(value: Any) -> int | None:
    if type(value) is int and 0 <= value <= MAX_REPORTED_TOKENS:
        return value
    return None


def extract_usage(router_body_or_chunk: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) the router reported, or None if absent or malformed."""
    if not isinstance(router_body_or_chunk, dict):
        return None
    usage = router_body_or_chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return prompt, completion


def _created(created: int | None, router_body: Any) -> int:
    if created is not None:
        return created
    value = router_body.get("created") if isinstance(router_body, dict) else None
    if type(value) is int and value > 0:
        return value
    return int(time.time())


def _suffix(request_id: str) -> str:
    """The request id without its `req_` prefix, shared by every id derived from it."""
    return request_id[4:]


def chat_completion(
    *,
    request_id: str,
    model: str,
    router_body: Any,
    usage: dict,
    created: int | None = None,
    text: str | None = None,
    finish_reason: str | None = None,
    tool_calls=(),
) -> dict:
    """A `chat.completion`; `created` defaults to the router's, else now. `text` and
    `finish_reason`, when given, replace the router's (the Portal cut the text at a stop
    sequence, or read tool calls out of it: then `content` is null when no text is left)."""
    content = extract_text(router_body) if text is None else text
    message = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["content"] = content or None
        message["tool_calls"] = tool_calls_list(tool_calls)
    return {
        "id": "chatcmpl-" + _suffix(request_id),
        "object": "chat.completion",
        "created": _created(created, router_body),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or extract_finish(router_body) or "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


def text_completion(
    *,
    request_id: str,
    model: str,
    router_body: Any,
    usage: dict,
    created: int | None = None,
    text: str | None = None,
    finish_reason: str | None = None,
) -> dict:
    """A `text_completion`, like `chat_completion`."""
    return {
        "id": "cmpl-" + _suffix(request_id),
        "object": "text_completion",
        "created": _created(created, router_body),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": extract_text(router_body) if text is None else text,
                "finish_reason": finish_reason or extract_finish(router_body) or "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


# -- streaming ---------------------------------------------------------------------------


def chat_chunk_id(request_id: str) -> str:
    return "chatcmpl-" + _suffix(request_id)


def completion_chunk_id(request_id: str) -> str:
    return "cmpl-" + _suffix(request_id)


def chat_chunk(
    *, chunk_id: str, created: int, model: str, delta: dict, finish_reason: str | None = None
) -> dict:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_first_chunk(*, chunk_id: str, created: int, model: str) -> dict:
    """The opening chunk OpenAI sends: the assistant role and empty content."""
    return chat_chunk(
        chunk_id=chunk_id, created=created, model=model, delta={"role": "assistant", "content": ""}
    )


def chat_usage_chunk(*, chunk_id: str, created: int, model: str, usage: dict) -> dict:
    """The last chunk when `stream_options.include_usage` is set: no choices, only usage."""
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage,
    }


def completion_chunk(
    *, chunk_id: str, created: int, model: str, text: str, finish_reason: str | None = None
) -> dict:
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def completion_usage_chunk(*, chunk_id: str, created: int, model: str, usage: dict) -> dict:
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage,
    }
