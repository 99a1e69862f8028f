"""A model's answer read against what the request asked for: the tool calls it made (named
as offered, arguments valid JSON objects, valid against the schema when the tool is
strict), the tool choice honoured, the JSON object an output format asked for.

`read` never raises on what the model wrote: a violation is reported as `problem`, which
the flow sends back to the model once (gateway/flow.py) before answering with an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from jsonschema.validators import validator_for

from gateway import toolcalls
from gateway.conversation import OutputFormat, Tool, ToolCall, new_call_id
from gateway.validation import InferenceRequest

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*)\n?```$", re.DOTALL)


@dataclass(slots=True)
class Reading:
    text: str
    calls: list[ToolCall] = field(default_factory=list)
    problem: str | None = None


@lru_cache(maxsize=512)
def _validator(key: str):
    schema = json.loads(key)
    return validator_for(schema)(schema)


def schema_problem(value: object, schema: dict) -> str | None:
    """The first way `value` breaks `schema`, in words, or None."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.path) or "the root"
    return f"{error.message} (at {where})"


def json_object(text: str) -> tuple[str, dict | None, str | None]:
    """(the JSON text without code fences, the object, a problem)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        return stripped, None, f"the answer is not valid JSON ({exc})"
    if not isinstance(value, dict):
        return stripped, None, "the answer is JSON but not an object"
    return stripped, value, None


def check_output(text: str, output: OutputFormat) -> tuple[str, str | None]:
    """(the answer's JSON text, a problem) for a JSON output format."""
    cleaned, value, problem = json_object(text)
    if (
        problem is None
        and output.kind == "json_schema"
        and output.strict
        and output.schema is not None
    ):
        broken = schema_problem(value, output.schema)
        if broken:
            problem = f"the JSON object does not match the schema {output.name!r}: {broken}"
    return cleaned, problem


def check_calls(
    found: list[toolcalls.Found], req: InferenceRequest, id_prefix: str
) -> tuple[list[ToolCall], str | None]:
    tools: dict[str, Tool] = {tool.name: tool for tool in req.tools}
    calls: list[ToolCall] = []
    for item in found:
        if item.error:
            return calls, f"a tool call was malformed: {item.error}"
        tool = tools.get(item.name)
        if tool is None:
            return calls, f"the function {item.name!r} does not exist (offered: {', '.join(tools)})"
        if tool.strict and tool.parameters is not None:
            broken = schema_problem(json.loads(item.arguments), tool.parameters)
            if broken:
                return (
                    calls,
                    f"the arguments of {item.name} do not match its parameters schema: {broken}",
                )
        calls.append(ToolCall(id=new_call_id(id_prefix), name=item.name, arguments=item.arguments))
    choice = req.tool_choice
    if choice.forces_call and not calls:
        wanted = (
            f"the function {choice.name!r}"
            if choice.mode == "function"
            else "at least one function"
        )
        return calls, f"the answer must call {wanted} (tool_choice) but called none"
    if choice.mode == "function" and any(call.name != choice.name for call in calls):
        return calls, f"the answer may only call the function {choice.name!r} (tool_choice)"
    if not req.parallel_tool_calls and len(calls) > 1:
        return (
            calls,
            f"the answer made {len(calls)} calls but may make at most one (parallel_tool_calls is false)",
        )
    return calls, None


def read(text: str, req: InferenceRequest, *, template: str, id_prefix: str = "call_") -> Reading:
    """The whole answer `text` read against `req`."""
    calls: list[ToolCall] = []
    if req.offers_tools:
        text, found = toolcalls.parse(text, toolcalls.syntax_for(template))
        calls, problem = check_calls(found, req, id_prefix)
        if problem:
            return Reading(text=text, calls=calls, problem=problem)
    if req.output is not None and not calls:
        cleaned, problem = check_output(text, req.output)
        return Reading(text=cleaned, problem=problem)
    return Reading(text=text, calls=calls)


def correction(problem: str) -> str:
    """What the model is told before its one more try."""
    return (
        f"Your previous answer could not be used: {problem}. "
        "Answer again, following the instructions about functions and output format exactly."
    )
