"""Request bodies of the OpenAI and Anthropic inference routes, checked and normalized.

Every parser returns one `InferenceRequest` or raises `PortalError("invalid_request_error")`
whose `param` names the offending field as a dotted path (`messages[0].content`). A field
the Portal cannot honour is refused with `unsupported_parameter` (gateway/params.py).
Tool definitions, tool calls and output formats become `gateway.conversation` values
(gateway/toolspec.py parses the definitions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway import params, toolspec
from gateway.conversation import AUTO, OutputFormat, Tool, ToolCall, ToolChoice
from portal import jsonbody
from portal.errors import PortalError

MAX_TOKENS_LIMIT = 1_000_000
MAX_STOP = 4  # OpenAI's limit on `stop`
MAX_STOP_SEQUENCES = 16  # Anthropic documents no limit; the Portal applies stop sequences itself
MAX_MODEL_NAME = 256
PART_SEPARATOR = "\n"  # between the text parts of one message or system prompt

_CHAT_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_CHAT_ROLE_HINT = "'system', 'developer', 'user', 'assistant', 'tool'"


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
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = AUTO
    parallel_tool_calls: bool = True
    output: OutputFormat | None = None
    raw: dict = field(default_factory=dict)

    @property
    def offers_tools(self) -> bool:
        """Tools the model may call in this answer (tool_choice none offers none)."""
        return bool(self.tools) and self.tool_choice.mode != "none"


def _invalid(message: str, param: str | None) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def parse_json_body(raw: bytes) -> Any:
    """The decoded body: strict UTF-8 and strict JSON (no NaN or Infinity), at most
    `portal.jsonbody.MAX_DEPTH` deep, no NUL or lone surrogate in any string (400 naming it)."""
    return jsonbody.loads(raw)


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
    if n is None or (n == 1 and type(n) is int):
        return
    if type(n) is int and n > 1:
        raise PortalError(
            "unsupported_parameter", "n is not supported: only n=1 is supported.", param="n"
        )
    raise _invalid("n must be 1 (only n=1 is supported).", "n")


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


def _message_list(body: dict) -> list:
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages is required.", "messages")
    if not isinstance(messages, list):
        raise _invalid("messages must be a list.", "messages")
    if not messages:
        raise _invalid("messages must hold at least one message.", "messages")
    return messages


def _content_text(content: Any, where: str, *, optional: bool = False) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _text_parts(content, where)
    if content is None:
        if optional:
            return None
        raise _invalid(f"{where} is required.", where)
    raise _invalid(f"{where} must be a string or a list of text parts.", where)


def _role(message: dict, where: str, roles: dict[str, str], hint: str) -> str:
    role = message.get("role")
    mapped = roles.get(role) if isinstance(role, str) else None
    if mapped is None:
        if role is None:
            raise _invalid(f"{where}.role is required.", f"{where}.role")
        if role == "function":
            raise PortalError(
                "unsupported_parameter",
                f"{where}.role 'function' (the legacy functions API) is not supported; use tools and role 'tool'.",
                param=f"{where}.role",
            )
        raise _invalid(f"{where}.role must be one of {hint}.", f"{where}.role")
    return mapped


def _openai_tool_calls(value: Any, where: str) -> list[ToolCall]:
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list.", where)
    calls = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{at} must be an object.", at)
        if item.get("type", "function") != "function":
            raise PortalError(
                "unsupported_parameter", f"{at}.type must be 'function'.", param=f"{at}.type"
            )
        call_id = item.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _invalid(f"{at}.id must be a non-empty string.", f"{at}.id")
        function = item.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{at}.function must be an object.", f"{at}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"{at}.function.name must be a non-empty string.", f"{at}.function.name")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise _invalid(
                f"{at}.function.arguments must be a string (JSON text).", f"{at}.function.arguments"
            )
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return calls


def _chat_messages(body: dict) -> list[dict]:
    """OpenAI chat messages, tool calls and tool results included."""
    normalized = []
    for index, message in enumerate(_message_list(body)):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{where} must be an object.", where)
        role = _role(message, where, _CHAT_ROLES, _CHAT_ROLE_HINT)
        if role == "assistant":
            calls = (
                _openai_tool_calls(message["tool_calls"], f"{where}.tool_calls")
                if message.get("tool_calls")
                else []
            )
            text = _content_text(message.get("content"), f"{where}.content", optional=bool(calls))
            entry: dict = {"role": "assistant", "content": text or ""}
            if calls:
                entry["tool_calls"] = calls
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _invalid(f"{where}.tool_call_id is required.", f"{where}.tool_call_id")
            entry = {
                "role": "tool",
                "content": _content_text(message.get("content"), f"{where}.content"),
                "tool_call_id": call_id,
            }
        else:
            entry = {
                "role": role,
                "content": _content_text(message.get("content"), f"{where}.content"),
            }
        normalized.append(entry)
    return normalized


# -- parsers -----------------------------------------------------------------------------


def parse_chat(body: Any) -> InferenceRequest:
    """`POST /v1/chat/completions`."""
    body = _object(body)
    params.check_fields(body, honoured=params.CHAT_HONOURED, refused=params.CHAT_REFUSED)
    model = _model(body)
    messages = _chat_messages(body)
    _n(body)
    tools = toolspec.openai_tools(body)
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
        tools=tools,
        tool_choice=toolspec.openai_tool_choice(body, tools),
        parallel_tool_calls=toolspec.parallel_tool_calls(body),
        output=toolspec.response_format(body.get("response_format")),
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
    params.check_fields(
        body, honoured=params.COMPLETION_HONOURED, refused=params.COMPLETION_REFUSED
    )
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
