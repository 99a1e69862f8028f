"""What the simulated model writes when a prompt carries tools or an output format.

- Tools, and the last turn is not a tool result (or a "You must call" line is present):
  a call in the family's syntax, to the named function or else the first tool, with
  arguments made from its `parameters` schema.
- Tools, and the last turn is a tool result: a short answer quoting the result (a JSON
  object instead when an output format is asked for).
- An output format: a JSON object, valid against the schema when there is one.

The `tool_mode` / `json_mode` knobs turn a good answer into a faulty one, so the
gateway's parsing, validation and retry paths can be driven offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .completions import completion_tokens
from .instances import invalid_instance, valid_instance
from .prompts import PromptAsks, Tool

TOOL_MODES = ("call", "text", "malformed", "invalid_args")
JSON_MODES = ("valid", "fenced", "invalid_json", "schema_violation")
RESULT_QUOTE_CHARS = 80


@dataclass(frozen=True, slots=True)
class StructuredAnswer:
    text: str
    kind: str  # "tool_call", "tool_result" (the answer after one) or "json"
    faulty: bool  # shaped by a non-default tool_mode / json_mode


def structured_answer(
    asks: PromptAsks,
    *,
    prompt: str,
    tool_mode: str,
    json_mode: str,
    parallel_calls: int,
    text_tokens: int,
) -> StructuredAnswer:
    """The answer text for `asks`; `prompt` seeds the free text, `text_tokens` sizes it."""
    if asks.tools and (asks.must_call or not asks.tool_results):
        return _call_answer(
            asks,
            prompt=prompt,
            mode=tool_mode,
            parallel_calls=parallel_calls,
            text_tokens=text_tokens,
        )
    if asks.output_format:
        return _json_answer(asks.schema, prompt=prompt, mode=json_mode)
    quoted = "\n".join(
        f"The tool said: {' '.join(result.split())[:RESULT_QUOTE_CHARS]}"
        for result in asks.tool_results
    )
    return StructuredAnswer(text=quoted, kind="tool_result", faulty=False)


# --- tool calls ----------------------------------------------------------------------


def _call_answer(
    asks: PromptAsks, *, prompt: str, mode: str, parallel_calls: int, text_tokens: int
) -> StructuredAnswer:
    if mode == "text":
        text = "".join(completion_tokens(prompt, text_tokens))
        return StructuredAnswer(text=text, kind="tool_call", faulty=True)
    calls = [
        _call_text(asks.family, tool.name, _arguments(tool, mode), malformed=mode == "malformed")
        for tool in _tools_to_call(asks, parallel_calls)
    ]
    return StructuredAnswer(text="\n".join(calls), kind="tool_call", faulty=mode != "call")


def _tools_to_call(asks: PromptAsks, parallel_calls: int) -> list[Tool]:
    if asks.forced_name is not None:
        named = next((tool for tool in asks.tools if tool.name == asks.forced_name), None)
        return [named or Tool(name=asks.forced_name, parameters={"type": "object"})]
    count = 1 if asks.at_most_one else max(parallel_calls, 1)
    if asks.tool_results:
        # A call required after a tool result: the last tool offered, where agent frameworks
        # (pydantic-ai, instructor) put their final-answer tool; the loop then ends.
        return [asks.tools[-1 - (i % len(asks.tools))] for i in range(count)]
    return [asks.tools[i % len(asks.tools)] for i in range(count)]


def _arguments(tool: Tool, mode: str) -> Any:
    if mode == "invalid_args":
        return invalid_instance(tool.parameters)
    return valid_instance(tool.parameters)


def _call_text(family: str, name: str, arguments: Any, *, malformed: bool) -> str:
    """One call in the family's syntax; `malformed` cuts its JSON short, markers intact."""
    if family == "llama3":
        body = _dumps(arguments)
        return f"<function={name}>{_truncated(body) if malformed else body}</function>"
    body = _dumps({"name": name, "arguments": arguments})
    if malformed:
        body = _truncated(body)
    if family == "gemma":
        return f"```tool_call\n{body}\n```"
    return f"<tool_call>\n{body}\n</tool_call>"


# --- JSON answers --------------------------------------------------------------------


def _json_answer(schema: Any, *, prompt: str, mode: str) -> StructuredAnswer:
    if schema is None:
        short = "".join(completion_tokens(prompt, 4)).strip()
        valid: Any = {"answer": short}
        violating: Any = [short]  # any object fits json_object; a list does not
    else:
        valid = valid_instance(schema)
        violating = invalid_instance(schema) if mode == "schema_violation" else None
    body = _dumps(valid)
    if mode == "fenced":
        text = f"```json\n{body}\n```"
    elif mode == "invalid_json":
        text = _truncated(body)
    elif mode == "schema_violation":
        text = _dumps(violating)
    else:
        text = body
    return StructuredAnswer(text=text, kind="json", faulty=mode != "valid")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _truncated(body: str) -> str:
    """Two thirds of a JSON text: no proper prefix of an object, array or string parses."""
    if body[:1] not in ("{", "[", '"'):
        body = "{" + body  # a bare number or literal: its prefix could still parse
    return body[: max(1, len(body) * 2 // 3)]
