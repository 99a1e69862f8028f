"""`POST /v1/responses` request bodies (OpenAI's Responses API, stateless), checked and
turned into the one `InferenceRequest`.

`input` items become chat-style messages: `function_call` items join the assistant
message before them as its tool calls, `function_call_output` items become `role:
"tool"` messages. `instructions` is the system text. Nothing is stored, so nothing can
be referred to: `previous_response_id`, `conversation` and `item_reference` items are
refused (gateway/params.py), `store` is accepted and has no effect.
"""

from __future__ import annotations

from typing import Any

from gateway import params, toolspec, validation
from gateway.conversation import ToolCall
from gateway.validation import InferenceRequest
from portal.errors import PortalError

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_ROLE_HINT = "'user', 'system', 'developer' or 'assistant'"
_TEXT_PARTS = ("input_text", "output_text")
_MEDIA_PARTS = {"input_image": "image", "input_file": "file", "input_audio": "audio"}
_ITEM_HINT = "'message', 'function_call' or 'function_call_output'"
MAX_METADATA_KEYS = 16


def _invalid(message: str, param: str | None) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def _unsupported(message: str, param: str) -> PortalError:
    return PortalError("unsupported_parameter", message, param=param)


def _string(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _invalid(f"{where} must be a {'' if empty else 'non-empty '}string.", where)
    return value


def _text_of(parts: Any, where: str) -> str:
    """A message's or a tool output's content: a string or a list of text parts."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        raise _invalid(f"{where} must be a string or a list of content parts.", where)
    texts = []
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise _invalid(f"{at} must be an object.", at)
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            texts.append(_string(part.get("text"), f"{at}.text", empty=True))
        elif kind == "refusal":  # an earlier assistant answer, sent back as it came
            texts.append(_string(part.get("refusal"), f"{at}.refusal", empty=True))
        elif kind in _MEDIA_PARTS:
            raise _unsupported(
                f"{at}: {_MEDIA_PARTS[kind]} input is not supported; only text parts ('input_text', 'output_text') are.",
                f"{at}.type",
            )
        else:
            got = f" (got {kind!r})" if isinstance(kind, str) else ""
            raise _invalid(f"{at}.type must be 'input_text' or 'output_text'{got}.", f"{at}.type")
    return validation.PART_SEPARATOR.join(texts)


def _message(item: dict, where: str) -> dict:
    role = item.get("role")
    mapped = _ROLES.get(role) if isinstance(role, str) else None
    if mapped is None:
        if role is None:
            raise _invalid(f"{where}.role is required.", f"{where}.role")
        raise _invalid(f"{where}.role must be {_ROLE_HINT}.", f"{where}.role")
    if "content" not in item:
        raise _invalid(f"{where}.content is required.", f"{where}.content")
    return {"role": mapped, "content": _text_of(item["content"], f"{where}.content")}


def _function_call(item: dict, where: str) -> ToolCall:
    arguments = item.get("arguments", "{}")
    if not isinstance(arguments, str):
        raise _invalid(f"{where}.arguments must be a string (JSON text).", f"{where}.arguments")
    return ToolCall(
        id=_string(item.get("call_id"), f"{where}.call_id"),
        name=_string(item.get("name"), f"{where}.name"),
        arguments=arguments,
    )


def _function_output(item: dict, where: str) -> dict:
    if "output" not in item:
        raise _invalid(f"{where}.output is required.", f"{where}.output")
    return {
        "role": "tool",
        "content": _text_of(item["output"], f"{where}.output"),
        "tool_call_id": _string(item.get("call_id"), f"{where}.call_id"),
    }


def _refuse_item(kind: Any, where: str) -> PortalError:
    param = f"{where}.type"
    if kind == "reasoning":
        return _unsupported(
            f"{where}: reasoning items are not supported: these models' reasoning is never returned, so it cannot be sent back.",
            param,
        )
    if kind == "item_reference":
        return _unsupported(
            f"{where}: item references are not supported: no items are stored; send the item itself.",
            param,
        )
    if isinstance(kind, str) and (
        kind.endswith(("_call", "_call_output")) or kind.startswith("mcp_")
    ):
        return _unsupported(
            f"{where}: {kind} items are not supported; only function tools are (items: {_ITEM_HINT}).",
            param,
        )
    got = f" (got {kind!r})" if isinstance(kind, str) else ""
    return _invalid(f"{where}.type must be {_ITEM_HINT}{got}.", param)


def input_messages(value: Any) -> list[dict]:
    """`input` as messages; consecutive `function_call` items (and the assistant message
    just before them) make one assistant message, as a chat history would carry them."""
    if value is None:
        raise _invalid("input is required.", "input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _invalid("input must be a string or a list of items.", "input")
    if not value:
        raise _invalid("input must hold at least one item.", "input")
    messages: list[dict] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = _function_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last["tool_calls"] = [*last.get("tool_calls", ()), call]
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(_function_output(item, where))
        else:
            raise _refuse_item(kind, where)
    return messages


def _instructions(body: dict) -> str:
    value = body.get("instructions")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid("instructions must be a string.", "instructions")
    return value


def metadata(body: dict) -> dict[str, str]:
    """Up to 16 string labels, echoed on the response (and stored nowhere)."""
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid("metadata must be an object of string values.", "metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise _invalid(f"metadata may hold at most {MAX_METADATA_KEYS} keys.", "metadata")
    return value


def parse_responses(body: Any) -> InferenceRequest:
    """`POST /v1/responses`."""
    body = validation._object(body)
    params.check_fields(body, honoured=params.RESPONSES_HONOURED, refused=params.RESPONSES_REFUSED)
    model = validation._model(body)
    messages = input_messages(body.get("input"))
    tools = toolspec.responses_tools(body)
    metadata(body)
    validation._bool(body.get("store"), "store")
    for name in ("prompt_cache_key", "safety_identifier"):
        validation._user(body.get(name), name)
    return InferenceRequest(
        kind="responses",
        model=model,
        messages=messages,
        system=_instructions(body),
        max_tokens=validation._int(body, "max_output_tokens", 1, validation.MAX_TOKENS_LIMIT),
        temperature=validation._float(body, "temperature", 0, 2),
        top_p=validation._float(body, "top_p", 0, 1),
        stream=validation._bool(body.get("stream"), "stream"),
        user=validation._user(body.get("user"), "user"),
        tools=tools,
        tool_choice=toolspec.responses_tool_choice(body, tools),
        parallel_tool_calls=toolspec.parallel_tool_calls(body),
        output=toolspec.responses_text_format(body),
        raw=body,
    )
