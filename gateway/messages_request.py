"""Request bodies of `POST /v1/messages` (Anthropic), checked and normalized into the same
`InferenceRequest` as OpenAI's: `tool_use` blocks become the assistant's tool calls,
`tool_result` blocks `role: "tool"` messages."""

from __future__ import annotations

from typing import Any

from gateway import params, toolspec
from gateway.conversation import ToolCall, arguments_text
from gateway.validation import (
    MAX_STOP_SEQUENCES,
    MAX_TOKENS_LIMIT,
    PART_SEPARATOR,
    InferenceRequest,
    _bool,
    _float,
    _int,
    _invalid,
    _message_list,
    _model,
    _object,
    _role,
    _stop_list,
    _text_parts,
    _user,
)


def _anthropic_blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        raise _invalid(f"{where} is required.", where)
    if not isinstance(content, list):
        raise _invalid(f"{where} must be a string or a list of content blocks.", where)
    if not content:
        raise _invalid(f"{where} must not be an empty list.", where)
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            raise _invalid(f"{where}[{index}] must be an object.", f"{where}[{index}]")
    return content


def _tool_result_text(block: dict, where: str) -> str:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = _text_parts(content, f"{where}.content") if content else ""
    else:
        raise _invalid(
            f"{where}.content must be a string or a list of text blocks.", f"{where}.content"
        )
    is_error = block.get("is_error")
    if is_error is not None and type(is_error) is not bool:
        raise _invalid(f"{where}.is_error must be a boolean.", f"{where}.is_error")
    return f"Error: {text}" if is_error else text


def _anthropic_messages(body: dict) -> list[dict]:
    """Anthropic messages: `tool_use` blocks become the assistant's tool calls, `tool_result`
    blocks become `role: "tool"` messages (before the user's own text, as they answer the
    calls just made)."""
    normalized = []
    for index, message in enumerate(_message_list(body)):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{where} must be an object.", where)
        role = _role(
            message,
            where,
            {"user": "user", "assistant": "assistant"},
            "'user', 'assistant' (put the system prompt in the top-level system field)",
        )
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[dict] = []
        for b, block in enumerate(_anthropic_blocks(message.get("content"), f"{where}.content")):
            at = f"{where}.content[{b}]"
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise _invalid(f"{at}.text must be a string.", f"{at}.text")
                texts.append(block["text"])
            elif kind == "tool_use" and role == "assistant":
                call_id, name, value = block.get("id"), block.get("name"), block.get("input", {})
                if not isinstance(call_id, str) or not call_id:
                    raise _invalid(f"{at}.id must be a non-empty string.", f"{at}.id")
                if not isinstance(name, str) or not name:
                    raise _invalid(f"{at}.name must be a non-empty string.", f"{at}.name")
                if not isinstance(value, dict):
                    raise _invalid(f"{at}.input must be an object.", f"{at}.input")
                calls.append(ToolCall(id=call_id, name=name, arguments=arguments_text(value)))
            elif kind == "tool_result" and role == "user":
                call_id = block.get("tool_use_id")
                if not isinstance(call_id, str) or not call_id:
                    raise _invalid(
                        f"{at}.tool_use_id must be a non-empty string.", f"{at}.tool_use_id"
                    )
                results.append(
                    {
                        "role": "tool",
                        "content": _tool_result_text(block, at),
                        "tool_call_id": call_id,
                    }
                )
            elif kind in ("tool_use", "tool_result"):
                side = "assistant" if kind == "tool_use" else "user"
                raise _invalid(f"{at}: {kind} blocks belong in {side} messages.", f"{at}.type")
            else:
                got = f" (got {kind!r})" if isinstance(kind, str) else ""
                raise _invalid(
                    f"{at}.type must be 'text', 'tool_use' or 'tool_result': only text and tools are supported{got}.",
                    f"{at}.type",
                )
        normalized.extend(results)
        text = PART_SEPARATOR.join(texts)
        if role == "assistant":
            entry: dict = {"role": "assistant", "content": text}
            if calls:
                entry["tool_calls"] = calls
            normalized.append(entry)
        elif texts or not results:
            normalized.append({"role": "user", "content": text})
    return normalized


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
    params.check_fields(body, honoured=params.MESSAGES_HONOURED, refused=params.MESSAGES_REFUSED)
    model = _model(body)
    if body.get("max_tokens") is None:
        raise _invalid("max_tokens is required.", "max_tokens")
    max_tokens = _int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    messages = _anthropic_messages(body)
    tools = toolspec.anthropic_tools(body)
    tool_choice, parallel = toolspec.anthropic_tool_choice(body, tools)
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
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        raw=body,
    )
