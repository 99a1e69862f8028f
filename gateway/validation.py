"""Request bodies of the OpenAI and Anthropic inference routes, checked and normalized.

Every parser returns one `InferenceRequest` or raises `PortalError("invalid_request_error")`
whose `param` names the offending field as a dotted path (`messages[0].content`). Fields
this gateway does not use are ignored, as the SDKs send some by default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from portal.errors import PortalError

MAX_TOKENS_LIMIT = 1_000_000
MAX_STOP = 4  # OpenAI's limit on `stop`
MAX_STOP_SEQUENCES = 16  # Anthropic documents no limit; the Portal applies stop sequences itself
MAX_MODEL_NAME = 256
PART_SEPARATOR = "\n"  # between the text parts of one message or system prompt

_CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_ANTHROPIC_ROLES = {"user": "user", "assistant": "assistant"}


@dataclass(slots=True)
class InferenceRequest:
    kind: str  # "chat" | "completion" | "messages"
    model: str
    messages: list[dict] = field(default_factory=list)
    prompt: str = ""
    system: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    raw: dict = field(default_factory=dict)


def _invalid(message: str, param: str | None) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def parse_json_body(raw: bytes) -> Any:
    """The decoded body; strict UTF-8 and strict JSON (no NaN or Infinity)."""
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise PortalError("invalid_json", "The request body is not valid UTF-8.") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PortalError(
            "invalid_json",
            f"The request body is not valid JSON: {exc.msg}"
            f" (line {exc.lineno}, column {exc.colno}).",
        ) from exc
    except (ValueError, RecursionError) as exc:  # NaN, over-long integers, deep nesting
        raise PortalError("invalid_json", f"The request body is not valid JSON: {exc}.") from exc


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


# -- field checks ------------------------------------------------------------------------


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None)
    return body


def _model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise _invalid("model is required.", "model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model must be a non-empty string.", "model")
    if len(model) > MAX_MODEL_NAME:
        raise _invalid(f"model must be at most {MAX_MODEL_NAME} characters.", "model")
    return model


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or (type(value) is float and not math.isfinite(value)):
        raise _invalid(f"{name} must be a finite number.", name)
    if not low <= value <= high:
        raise _invalid(f"{name} must be between {low:g} and {high:g}.", name)
    return float(value)


def _int(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not int:  # bool and float are not integers here
        raise _invalid(f"{name} must be an integer.", name)
    if value < low:
        raise _invalid(f"{name} must be at least {low}.", name)
    if high is not None and value > high:
        raise _invalid(f"{name} must be at most {high:,}.", name)
    return value


def _bool(value: Any, param: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise _invalid(f"{param} must be a boolean.", param)
    return value


def _user(value: Any, param: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid(f"{param} must be a string.", param)


def _n(body: dict) -> None:
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise _invalid("only n=1 is supported.", "n")


def _stop_list(value: list, name: str, limit: int) -> list[str]:
    if len(value) > limit:
        raise _invalid(f"{name} may hold at most {limit} sequences.", name)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise _invalid(f"{name} must hold non-empty strings.", f"{name}[{index}]")
    return value


def _openai_stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        if not stop:
            raise _invalid("stop must be a non-empty string or a list of them.", "stop")
        return [stop]
    if isinstance(stop, list):
        return _stop_list(stop, "stop", MAX_STOP)
    raise _invalid("stop must be a string or a list of strings.", "stop")


def _stream(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage); stream_options only matter when streaming."""
    stream = _bool(body.get("stream"), "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise _invalid("stream_options must be an object.", "stream_options")
    include_usage = _bool(options.get("include_usage"), "stream_options.include_usage")
    return stream, stream and include_usage


def _text_parts(parts: list, param: str) -> str:
    """Join a list of `{"type": "text", "text": ...}` blocks; anything else is refused."""
    if not parts:
        raise _invalid(f"{param} must not be an empty list.", param)
    texts = []
    for index, part in enumerate(parts):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _invalid(f"{where} must be an object.", where)
        kind = part.get("type")
        if kind != "text":
            got = f" (got {kind!r})" if isinstance(kind, str) else ""
            message = f"{where}.type must be 'text': only text content is supported{got}."
            raise _invalid(message, f"{where}.type")
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{where}.text must be a string.", f"{where}.text")
        texts.append(text)
    return texts[0] if len(texts) == 1 else PART_SEPARATOR.join(texts)


def _messages(body: dict, roles: dict[str, str], role_hint: str) -> list[dict]:
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages is required.", "messages")
    if not isinstance(messages, list):
        raise _invalid("messages must be a list.", "messages")
    if not messages:
        raise _invalid("messages must hold at least one message.", "messages")
    normalized = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{where} must be an object.", where)
        role = message.get("role")
        mapped = roles.get(role) if isinstance(role, str) else None
        if mapped is None:
            if role is None:
                raise _invalid(f"{where}.role is required.", f"{where}.role")
            raise _invalid(f"{where}.role must be one of {role_hint}.", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = _text_parts(content, f"{where}.content")
        elif content is None:
            raise _invalid(f"{where}.content is required.", f"{where}.content")
        else:
            raise _invalid(
                f"{where}.content must be a string or a list of text parts.", f"{where}.content"
            )
        normalized.append({"role": mapped, "content": text})
    return normalized


# -- parsers -----------------------------------------------------------------------------


def parse_chat(body: Any) -> InferenceRequest:
    """`POST /v1/chat/completions`."""
    body = _object(body)
    model = _model(body)
    messages = _messages(body, _CHAT_ROLES, "'system', 'developer', 'user', 'assistant'")
    _n(body)
    max_tokens = _int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    max_completion_tokens = _int(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    stream, include_usage = _stream(body)
    return InferenceRequest(
        kind="chat",
        model=model,
        messages=messages,
        max_tokens=max_completion_tokens if max_completion_tokens is not None else max_tokens,
        temperature=_float(body, "temperature", 0, 2),
        top_p=_float(body, "top_p", 0, 1),
        top_k=_int(body, "top_k", 0),
        presence_penalty=_float(body, "presence_penalty", -2, 2),
        frequency_penalty=_float(body, "frequency_penalty", -2, 2),
        stop=_openai_stop(body),
        stream=stream,
        include_usage=include_usage,
        user=_user(body.get("user"), "user"),
        raw=body,
    )


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if prompt is None:
        raise _invalid("prompt is required.", "prompt")
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if not prompt:
            raise _invalid("prompt must not be an empty list.", "prompt")
        if all(isinstance(item, str) for item in prompt):
            raise _invalid("only one prompt per request is supported.", "prompt")
        raise _invalid("prompt must be a string; token id prompts are not supported.", "prompt")
    raise _invalid("prompt must be a string.", "prompt")


def parse_completion(body: Any) -> InferenceRequest:
    """`POST /v1/completions` (legacy text completions)."""
    body = _object(body)
    model = _model(body)
    prompt = _prompt(body)
    _n(body)
    stream, include_usage = _stream(body)
    return InferenceRequest(
        kind="completion",
        model=model,
        prompt=prompt,
        max_tokens=_int(body, "max_tokens", 1, MAX_TOKENS_LIMIT),
        temperature=_float(body, "temperature", 0, 2),
        top_p=_float(body, "top_p", 0, 1),
        top_k=_int(body, "top_k", 0),
        presence_penalty=_float(body, "presence_penalty", -2, 2),
        frequency_penalty=_float(body, "frequency_penalty", -2, 2),
        stop=_openai_stop(body),
        stream=stream,
        include_usage=include_usage,
        user=_user(body.get("user"), "user"),
        raw=body,
    )


def _anthropic_system(body: dict) -> str:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list):
        return _text_parts(system, "system") if system else ""
    raise _invalid("system must be a string or a list of text blocks.", "system")


def _anthropic_stop(body: dict) -> list[str]:
    stop = body.get("stop_sequences")
    if stop is None:
        return []
    if not isinstance(stop, list):
        raise _invalid("stop_sequences must be a list of strings.", "stop_sequences")
    return _stop_list(stop, "stop_sequences", MAX_STOP_SEQUENCES)


def _anthropic_user(body: dict) -> str | None:
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _invalid("metadata must be an object.", "metadata")
    return _user(metadata.get("user_id"), "metadata.user_id")


def parse_messages(body: Any) -> InferenceRequest:
    """`POST /v1/messages` (Anthropic)."""
    body = _object(body)
    model = _model(body)
    if body.get("max_tokens") is None:
        raise _invalid("max_tokens is required.", "max_tokens")
    max_tokens = _int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    messages = _messages(
        body,
        _ANTHROPIC_ROLES,
        "'user', 'assistant' (put the system prompt in the top-level system field)",
    )
    return InferenceRequest(
        kind="messages",
        model=model,
        messages=messages,
        system=_anthropic_system(body),
        max_tokens=max_tokens,
        temperature=_float(body, "temperature", 0, 1),
        top_p=_float(body, "top_p", 0, 1),
        top_k=_int(body, "top_k", 0),
        stop=_anthropic_stop(body),
        stream=_bool(body.get("stream"), "stream"),
        user=_anthropic_user(body),
        raw=body,
    )
