"""What a prompt asks of the model: tools to call, an output format, tool results to answer.

The gateway renders tool definitions and output formats into the system text of each
template family (chatml, gemma, llama3, plain); this module reads them back the way a
model would, without importing the gateway: the simulator stands on the model's side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TOOLS_MARKER = "<tools>"
OUTPUT_FORMAT_MARKER = "# Output format"

_MUST_CALL_NAMED = re.compile(r'You must call the function "([^"\n]+)"\.')
_MUST_CALL_ANY = "You must call at least one function."
_AT_MOST_ONE = "Call at most one function."
_TAGGED_RESULT = re.compile(r"<tool_response>\n?(.*?)\n?</tool_response>", re.DOTALL)
_FENCED_RESULT = re.compile(r"```tool_response\n(.*?)\n?```", re.DOTALL)
_SCHEMA = re.compile(r"<json_schema>\n?(.*?)\n?</json_schema>", re.DOTALL)

# Where the system text (holding the tool block) ends, per family. Gemma has no system
# turn, so its region runs on through the first user message; plain ends at the next turn.
_SYSTEM_END = {
    "chatml": ("<|im_end|>",),
    "gemma": ("<end_of_turn>",),
    "llama3": ("<|eot_id|>",),
    "plain": ("\n\nUser: ", "\n\nAssistant:"),
}


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Any


@dataclass(frozen=True, slots=True)
class PromptAsks:
    family: str
    tools: tuple[Tool, ...]
    must_call: bool  # "You must call ..." (any function, or the named one)
    forced_name: str | None  # `You must call the function "NAME".`
    at_most_one: bool
    tool_results: tuple[str, ...]  # the last turn's tool results, empty if it is not one
    output_format: bool
    schema: Any  # None: a JSON object of any shape


def prompt_family(prompt: str) -> str:
    if "<|im_start|>" in prompt:
        return "chatml"
    if "<start_of_turn>" in prompt:
        return "gemma"
    if "<|begin_of_text|>" in prompt:
        return "llama3"
    return "plain"


def prompt_read(prompt: str) -> PromptAsks | None:
    """What `prompt` asks for, or None when it has neither usable tools nor an output format."""
    has_tools = TOOLS_MARKER in prompt
    has_format = OUTPUT_FORMAT_MARKER in prompt
    if not has_tools and not has_format:
        return None
    family = prompt_family(prompt)
    tools: tuple[Tool, ...] = ()
    choice_text = ""
    if has_tools:
        tools, choice_text = _tool_block(prompt, family)
    if not tools and not has_format:
        return None
    named = _MUST_CALL_NAMED.search(choice_text)
    schema = None
    if has_format:
        found = _SCHEMA.search(prompt, prompt.index(OUTPUT_FORMAT_MARKER))
        if found:
            try:
                schema = json.loads(found.group(1))
            except json.JSONDecodeError:
                schema = None
    return PromptAsks(
        family=family,
        tools=tools,
        must_call=bool(named) or _MUST_CALL_ANY in choice_text,
        forced_name=named.group(1) if named else None,
        at_most_one=_AT_MOST_ONE in choice_text,
        tool_results=_last_tool_results(prompt, family) if tools else (),
        output_format=has_format,
        schema=schema,
    )


def _tool_block(prompt: str, family: str) -> tuple[tuple[Tool, ...], str]:
    """The tools between `<tools>` and `</tools>` (one JSON object a line), and the text
    after the block up to the end of the system text, where the tool-choice line is."""
    # The block opens on a line of its own; the intro sentence names "<tools></tools>" inline.
    start = prompt.find(TOOLS_MARKER + "\n")
    end = prompt.find("</tools>", start)
    if start == -1 or end == -1:
        return (), ""
    tools = []
    for line in prompt[start:end].splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        function = entry.get("function", entry) if isinstance(entry, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            tools.append(Tool(name=function["name"], parameters=function.get("parameters", {})))
    stops = [prompt.find(marker, end) for marker in _SYSTEM_END[family]]
    region_end = min((i for i in stops if i != -1), default=len(prompt))
    return tuple(tools), prompt[end:region_end]


# --- the last turn -------------------------------------------------------------------


def _last_tool_results(prompt: str, family: str) -> tuple[str, ...]:
    """The tool results the model is answering, when the last turn before its own holds them."""
    if family == "llama3":
        return _llama3_results(prompt)
    turn = _LAST_TURN[family](prompt)
    if turn is None:
        return ()
    role, content = turn
    content = content.strip()
    if family == "gemma":
        pattern, opener = _FENCED_RESULT, "```tool_response"
    else:
        pattern, opener = _TAGGED_RESULT, "<tool_response>"
    if role.lower() in ("user", "tool") and content.startswith(opener):
        return tuple(pattern.findall(content))
    return ()


def _turns_before_answer(turns: list[tuple[str, str]], answer_role: str) -> list[tuple[str, str]]:
    """Drop the (empty) turn the prompt opens for the model to write in."""
    if turns and turns[-1][0] == answer_role and not turns[-1][1].strip():
        return turns[:-1]
    return turns


def _chatml_last(prompt: str) -> tuple[str, str] | None:
    turns = []
    for segment in prompt.split("<|im_start|>")[1:]:
        role, _, content = segment.partition("\n")
        turns.append((role.strip(), content.split("<|im_end|>", 1)[0]))
    turns = _turns_before_answer(turns, "assistant")
    return turns[-1] if turns else None


def _gemma_last(prompt: str) -> tuple[str, str] | None:
    turns = []
    for segment in prompt.split("<start_of_turn>")[1:]:
        role, _, content = segment.partition("\n")
        turns.append((role.strip(), content.split("<end_of_turn>", 1)[0]))
    turns = _turns_before_answer(turns, "model")
    return turns[-1] if turns else None


def _plain_last(prompt: str) -> tuple[str, str] | None:
    body = prompt.rstrip()
    if body.endswith("Assistant:"):
        body = body[: -len("Assistant:")].rstrip()
    starts = [body.rfind(f"\n\n{name}: ") for name in ("System", "User", "Assistant")]
    start = max(starts)
    paragraph = body[start + 2 :] if start != -1 else body
    role, separator, content = paragraph.partition(": ")
    return (role, content) if separator else None


def _llama3_results(prompt: str) -> tuple[str, ...]:
    """Llama 3 gives each result its own `ipython` turn: the trailing run of them."""
    turns = []
    for segment in prompt.split("<|start_header_id|>")[1:]:
        role, _, content = segment.partition("<|end_header_id|>")
        turns.append((role.strip(), content.removeprefix("\n\n").split("<|eot_id|>", 1)[0]))
    turns = _turns_before_answer(turns, "assistant")
    results = []
    for role, content in reversed(turns):
        if role not in ("ipython", "tool"):
            break
        results.append(content.strip())
    return tuple(reversed(results))


_LAST_TURN = {"chatml": _chatml_last, "gemma": _gemma_last, "plain": _plain_last}
