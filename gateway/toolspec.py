"""Tool definitions, tool choices and output formats of the OpenAI and Anthropic APIs,
checked and turned into `gateway.conversation` values.

Schemas are checked with the JSON Schema library's own meta-schema check, so a schema
the Portal would later fail to validate against is refused up front, with its path.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from gateway.conversation import AUTO, OutputFormat, Tool, ToolChoice
from portal.errors import PortalError

_OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ANTHROPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_TOOLS = 128


def _invalid(message: str, param: str | None) -> PortalError:
    return PortalError("invalid_request_error", message, param=param)


def _unsupported(message: str, param: str) -> PortalError:
    return PortalError("unsupported_parameter", message, param=param)


def check_schema(schema: Any, param: str) -> dict:
    if not isinstance(schema, dict):
        raise _invalid(f"{param} must be a JSON Schema object.", param)
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        raise _invalid(f"{param} must be a JSON Schema object.", param) from None
    problem = _schema_problem(key)
    if problem:
        raise _invalid(f"{param} is not a valid JSON Schema: {problem}.", param)
    return schema


@lru_cache(maxsize=512)
def _schema_problem(key: str) -> str | None:
    """Checking a schema against its meta-schema takes about a millisecond; clients send the
    same few schemas with every request, so each is checked once per process."""
    schema = json.loads(key)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.path)
        return f"{exc.message} (at {where or 'the root'})"
    return None


def _tool_list(value: Any, param: str) -> list:
    if not isinstance(value, list):
        raise _invalid(f"{param} must be a list.", param)
    if len(value) > MAX_TOOLS:
        raise _invalid(f"{param} may hold at most {MAX_TOOLS} tools.", param)
    return value


def _unique(tools: list[Tool], param: str) -> list[Tool]:
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in seen:
            raise _invalid(f"{param} holds two tools named {tool.name!r}.", f"{param}[{index}]")
        seen.add(tool.name)
    return tools


# -- OpenAI ------------------------------------------------------------------------------


def _function_tools(body: dict):
    """(where, item) of each tool in `tools`, each an object of type function."""
    value = body.get("tools")
    if value is None:
        return
    for index, item in enumerate(_tool_list(value, "tools")):
        where = f"tools[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object.", where)
        if item.get("type") != "function":
            got = item.get("type")
            raise _unsupported(
                f"{where}.type must be 'function': only function tools are supported (got {got!r}).",
                f"{where}.type",
            )
        yield where, item


def openai_tools(body: dict) -> list[Tool]:
    tools = []
    for where, item in _function_tools(body):
        function = item.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{where}.function must be an object.", f"{where}.function")
        tools.append(_function(function, f"{where}.function", parameters_key="parameters"))
    return _unique(tools, "tools")


def _function(function: dict, where: str, *, parameters_key: str, name_rule=_OPENAI_NAME) -> Tool:
    name = function.get("name")
    if not isinstance(name, str) or not name_rule.fullmatch(name):
        raise _invalid(
            f"{where}.name must be 1-{64 if name_rule is _OPENAI_NAME else 128} letters, digits, underscores or dashes.",
            f"{where}.name",
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid(f"{where}.description must be a string.", f"{where}.description")
    parameters = function.get(parameters_key)
    if parameters is not None:
        parameters = check_schema(parameters, f"{where}.{parameters_key}")
    strict = function.get("strict")
    if strict is not None and type(strict) is not bool:
        raise _invalid(f"{where}.strict must be a boolean.", f"{where}.strict")
    return Tool(
        name=name, description=description or "", parameters=parameters, strict=bool(strict)
    )


def openai_tool_choice(body: dict, tools: list[Tool]) -> ToolChoice:
    value = body.get("tool_choice")
    if value is None:
        return AUTO
    if not tools:
        raise _invalid("tool_choice is only allowed when tools are specified.", "tool_choice")
    if value in ("auto", "none", "required"):
        return ToolChoice(mode=value)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return _named(name, tools, "tool_choice.function.name")
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        raise _unsupported(
            "tool_choice type 'allowed_tools' is not supported; narrow `tools` instead.",
            "tool_choice",
        )
    raise _invalid(
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        "tool_choice",
    )


def _named(name: Any, tools: list[Tool], param: str) -> ToolChoice:
    if not isinstance(name, str) or name not in {tool.name for tool in tools}:
        raise _invalid(
            f"{param} must name one of the tools ({', '.join(t.name for t in tools)}).", param
        )
    return ToolChoice(mode="function", name=name)


def parallel_tool_calls(body: dict) -> bool:
    value = body.get("parallel_tool_calls")
    if value is None:
        return True
    if type(value) is not bool:
        raise _invalid("parallel_tool_calls must be a boolean.", "parallel_tool_calls")
    return value


def response_format(value: Any, param: str = "response_format") -> OutputFormat | None:
    """OpenAI chat's `response_format` (and, through `responses_text_format`, Responses'
    `text.format`): None for plain text."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{param} must be an object.", param)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = value.get("schema")
        if schema is not None:
            # The JSON mode with a schema of vLLM, Together and Anyscale (instructor's
            # JSON_SCHEMA mode sends it): the schema guides the answer and is checked.
            return OutputFormat(
                kind="json_schema",
                schema=check_schema(schema, f"{param}.schema"),
                name="response",
                strict=True,
            )
        return OutputFormat(kind="json_object")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise _invalid(f"{param}.json_schema must be an object.", f"{param}.json_schema")
        return _schema_format(spec, f"{param}.json_schema")
    raise _invalid(f"{param}.type must be 'text', 'json_object' or 'json_schema'.", f"{param}.type")


def _schema_format(spec: dict, where: str) -> OutputFormat:
    name = spec.get("name")
    if not isinstance(name, str) or not _OPENAI_NAME.fullmatch(name):
        raise _invalid(
            f"{where}.name must be 1-64 letters, digits, underscores or dashes.", f"{where}.name"
        )
    schema = check_schema(spec.get("schema", {"type": "object"}), f"{where}.schema")
    strict = spec.get("strict")
    if strict is not None and type(strict) is not bool:
        raise _invalid(f"{where}.strict must be a boolean.", f"{where}.strict")
    return OutputFormat(kind="json_schema", schema=schema, name=name, strict=bool(strict))


def responses_text_format(body: dict) -> OutputFormat | None:
    """Responses' `text: {"format": {...}}`: the schema sits beside `type`, not inside it."""
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _invalid("text must be an object.", "text")
    if text.get("verbosity") not in (None, "medium"):
        raise _unsupported(
            "text.verbosity is not supported: verbosity cannot be set for these models.",
            "text.verbosity",
        )
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _invalid("text.format must be an object.", "text.format")
    if fmt.get("type") == "json_schema":
        return _schema_format(fmt, "text.format")
    return response_format(fmt, "text.format")


def responses_tools(body: dict) -> list[Tool]:
    """Responses' flat function tools: `{"type": "function", "name", "parameters", ...}`."""
    tools = [
        _function(item, where, parameters_key="parameters") for where, item in _function_tools(body)
    ]
    return _unique(tools, "tools")


def responses_tool_choice(body: dict, tools: list[Tool]) -> ToolChoice:
    value = body.get("tool_choice")
    if value is None:
        return AUTO
    if value in ("auto", "none", "required"):
        if not tools and value != "none":
            raise _invalid("tool_choice is only allowed when tools are specified.", "tool_choice")
        return ToolChoice(mode=value)
    if isinstance(value, dict) and value.get("type") == "function":
        return _named(value.get("name"), tools, "tool_choice.name")
    raise _invalid(
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'name': ...}.",
        "tool_choice",
    )


# -- Anthropic ---------------------------------------------------------------------------


def anthropic_tools(body: dict) -> list[Tool]:
    value = body.get("tools")
    if value is None:
        return []
    tools = []
    for index, item in enumerate(_tool_list(value, "tools")):
        where = f"tools[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object.", where)
        if item.get("type") not in (None, "custom"):
            got = item.get("type")
            raise _unsupported(
                f"{where}: only custom (client) tools are supported, not {got!r}.", f"{where}.type"
            )
        if "input_schema" not in item:
            raise _invalid(f"{where}.input_schema is required.", f"{where}.input_schema")
        tools.append(
            _function(item, where, parameters_key="input_schema", name_rule=_ANTHROPIC_NAME)
        )
    return _unique(tools, "tools")


def anthropic_tool_choice(body: dict, tools: list[Tool]) -> tuple[ToolChoice, bool]:
    """(the choice, whether several calls may come at once)."""
    value = body.get("tool_choice")
    if value is None:
        return AUTO, True
    if not isinstance(value, dict):
        raise _invalid("tool_choice must be an object.", "tool_choice")
    if not tools and value.get("type") != "none":
        raise _invalid("tool_choice may only be specified while providing tools.", "tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and type(disable) is not bool:
        raise _invalid(
            "tool_choice.disable_parallel_tool_use must be a boolean.",
            "tool_choice.disable_parallel_tool_use",
        )
    parallel = not disable
    kind = value.get("type")
    if kind == "auto":
        return AUTO, parallel
    if kind == "none":
        return ToolChoice(mode="none"), parallel
    if kind == "any":
        return ToolChoice(mode="required"), parallel
    if kind == "tool":
        return _named(value.get("name"), tools, "tool_choice.name"), parallel
    raise _invalid("tool_choice.type must be 'auto', 'any', 'tool' or 'none'.", "tool_choice.type")
