"""Anthropic Messages API shapes: the `message` object, stream events and error bodies.

Stream builders return `(event_name, data)` pairs for `gateway.sse.named_event`; a
stream is message_start, content_block_start, ping, content_block_delta…,
content_block_stop, message_delta, message_stop.
"""

from __future__ import annotations

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
}


def message_id(request_id: str) -> str:
    return "msg_" + request_id[4:]


def stop_reason(finish_reason: str | None, stop_sequence: str | None = None) -> str:
    """Anthropic's stop_reason for an OpenAI-style finish reason."""
    if stop_sequence is not None or finish_reason == "stop_sequence":
        return "stop_sequence"
    return _STOP_REASONS.get(finish_reason, "end_turn")


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message_response(
    *,
    request_id: str,
    model: str,
    text: str,
    finish_reason: str | None,
    usage: dict,
    stop_sequence: str | None = None,
    tool_calls=(),
) -> dict:
    """A `message`; `usage` is `gateway.openai_format.usage_dict`'s OpenAI-style counts. Tool
    calls follow the text as `tool_use` blocks (the text block is left out when empty)."""
    content = [{"type": "text", "text": text}] if text or not tool_calls else []
    content += [tool_use_block(call) for call in tool_calls]
    return {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish_reason, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": _usage(usage["prompt_tokens"], usage["completion_tokens"]),
    }


def tool_use_block(call, *, streaming: bool = False) -> dict:
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": {} if streaming else call.input(),
    }


# -- stream events -----------------------------------------------------------------------


def message_start_event(
    *, request_id: str, model: str, input_tokens: int, output_tokens: int = 1
) -> tuple[str, dict]:
    return "message_start", {
        "type": "message_start",
        "message": {
            "id": message_id(request_id),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(input_tokens, output_tokens),
        },
    }


def content_block_start_event(index: int = 0) -> tuple[str, dict]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }


def ping_event() -> tuple[str, dict]:
    return "ping", {"type": "ping"}


def text_delta_event(text: str, index: int = 0) -> tuple[str, dict]:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def tool_use_start_event(call, index: int) -> tuple[str, dict]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": tool_use_block(call, streaming=True),
    }


def input_json_delta_event(partial_json: str, index: int) -> tuple[str, dict]:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial_json},
    }


def content_block_stop_event(index: int = 0) -> tuple[str, dict]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def message_delta_event(
    *,
    finish_reason: str | None,
    output_tokens: int,
    stop_sequence: str | None = None,
    input_tokens: int | None = None,
) -> tuple[str, dict]:
    """The closing delta; `input_tokens` fixes the estimate sent in message_start."""
    usage = {"output_tokens": output_tokens}
    if input_tokens is not None:
        usage["input_tokens"] = input_tokens
    reason = stop_reason(finish_reason, stop_sequence)
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
        "usage": usage,
    }


def message_stop_event() -> tuple[str, dict]:
    return "message_stop", {"type": "message_stop"}


def error_event(message: str, type_: str = "api_error") -> tuple[str, dict]:
    """A mid-stream failure; the SDKs raise it as an APIStatusError."""
    return "error", error_body(type_=type_, message=message)


# -- errors ------------------------------------------------------------------------------


def error_body(*, type_: str, message: str, request_id: str | None = None) -> dict:
    body = {"type": "error", "error": {"type": type_, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


_TYPE_BY_CODE = {
    "request_too_large": "request_too_large",
    "upstream_timeout": "timeout_error",
}
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(openai_code: str, status: int) -> str:
    """Anthropic's error `type` for a Portal error code (see `portal.errors.CATALOG`) and status."""
    by_code = _TYPE_BY_CODE.get(openai_code)
    if by_code is not None:
        return by_code
    by_status = _TYPE_BY_STATUS.get(status)
    if by_status is not None:
        return by_status
    return "api_error" if status >= 500 else "invalid_request_error"
