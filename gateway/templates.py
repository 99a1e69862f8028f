"""Chat messages rendered into the single prompt string a Cortensor router takes.

Every template puts the system text first (the separate `system` argument, then any
system messages, joined by a blank line; then the tools the model may call and the
output format asked for), then the turns in order, and ends by opening the assistant's
turn so the model writes the answer. An assistant turn's tool calls are written in the
family's call syntax (gateway/toolcalls.py); tool results are written the way the
family's models were trained to read them: a user turn of `<tool_response>` blocks
(chatml, plain), an `ipython` turn (llama3), a user turn of ```` ```tool_response ````
fences (gemma).
"""

from __future__ import annotations

import json

from gateway.conversation import AUTO, OutputFormat, Tool, ToolChoice
from gateway.toolcalls import TOOLS_HEADER, syntax_for

TEMPLATES = ("chatml", "gemma", "llama3", "plain")
SYSTEM_SEPARATOR = "\n\n"


def tools_block(template: str, tools: list[Tool], choice: ToolChoice, parallel: bool) -> str:
    """The system text that offers `tools` (nothing when there are none or choice is none)."""
    if not tools or choice.mode == "none":
        return ""
    lines = [TOOLS_HEADER + "<tools>"]
    lines += [json.dumps(tool.signature(), ensure_ascii=False) for tool in tools]
    lines.append("</tools>\n")
    lines.append(syntax_for(template).instruction)
    if choice.mode == "required":
        lines.append("You must call at least one function.")
    elif choice.mode == "function":
        lines.append(f'You must call the function "{choice.name}".')
    if not parallel:
        lines.append("Call at most one function.")
    return "\n".join(lines)


def output_block(output: OutputFormat | None) -> str:
    """The system text that asks for a JSON object (and its schema)."""
    if output is None:
        return ""
    text = "# Output format\n\nRespond with a single JSON object and nothing else: no prose, no code fences."
    if output.kind == "json_schema" and output.schema is not None:
        schema = json.dumps(output.schema, ensure_ascii=False)
        text += (
            f"\nThe object must match this JSON Schema:\n<json_schema>\n{schema}\n</json_schema>"
        )
    return text


def _tool_text(template: str, message: dict) -> dict:
    """An assistant turn with its calls written out, a tool result as the family reads it."""
    if message["role"] == "assistant" and message.get("tool_calls"):
        syntax = syntax_for(template)
        calls = "\n".join(syntax.render(c.name, c.arguments) for c in message["tool_calls"])
        content = f"{message['content']}\n{calls}" if message["content"] else calls
        return {"role": "assistant", "content": content}
    if message["role"] == "tool":
        if template == "gemma":
            return {"role": "tool", "content": f"```tool_response\n{message['content']}\n```"}
        if template == "llama3":
            return {"role": "tool", "content": message["content"]}
        return {
            "role": "tool",
            "content": f"<tool_response>\n{message['content']}\n</tool_response>",
        }
    return message


def _merge_tool_results(turns: list[dict], role: str) -> list[dict]:
    """Consecutive tool results as one turn of `role` (a user turn holding every result)."""
    merged: list[dict] = []
    for turn in turns:
        if turn["role"] == "tool" and merged and merged[-1].get("_tools"):
            merged[-1] = {**merged[-1], "content": merged[-1]["content"] + "\n" + turn["content"]}
        elif turn["role"] == "tool":
            merged.append({"role": role, "content": turn["content"], "_tools": True})
        else:
            merged.append(turn)
    return merged


def _split_system(messages: list[dict], system: str) -> tuple[str, list[dict]]:
    """(all system text, the user/assistant turns); no copy when there is no system message."""
    if not any(m["role"] == "system" for m in messages):
        return system, messages
    parts = [system] if system else []
    turns = []
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"])
        else:
            turns.append(message)
    return SYSTEM_SEPARATOR.join(parts), turns


def _chatml(system: str, turns: list[dict]) -> str:
    out = []
    if system:
        out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    for m in turns:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def _gemma(system: str, turns: list[dict]) -> str:
    # Gemma has no system role: the system text opens the first user turn.
    out = []
    pending = system
    for m in turns:
        if m["role"] == "user":
            content = f"{pending}\n\n{m['content']}" if pending else m["content"]
            pending = ""
            out.append(f"<start_of_turn>user\n{content}<end_of_turn>\n")
        else:
            if pending:
                out.append(f"<start_of_turn>user\n{pending}<end_of_turn>\n")
                pending = ""
            out.append(f"<start_of_turn>model\n{m['content']}<end_of_turn>\n")
    if pending:
        out.append(f"<start_of_turn>user\n{pending}<end_of_turn>\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)


def _llama3(system: str, turns: list[dict]) -> str:
    out = ["<|begin_of_text|>"]
    if system:
        out.append(f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>")
    for m in turns:
        role = "ipython" if m["role"] == "tool" else m["role"]
        out.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n{m['content']}<|eot_id|>")
    out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


_PLAIN_NAMES = {"user": "User", "assistant": "Assistant"}


def _plain(system: str, turns: list[dict]) -> str:
    out = [f"System: {system}"] if system else []
    for m in turns:
        out.append(f"{_PLAIN_NAMES[m['role']]}: {m['content']}")
    out.append("Assistant:")
    return "\n\n".join(out)


_RENDERERS = {"chatml": _chatml, "gemma": _gemma, "llama3": _llama3, "plain": _plain}


def render_prompt(
    template: str,
    messages: list[dict],
    system: str = "",
    *,
    tools: list[Tool] = (),
    tool_choice: ToolChoice = AUTO,
    parallel_tool_calls: bool = True,
    output: OutputFormat | None = None,
) -> str:
    """The prompt for `messages` (normalized by `gateway.validation`) in `template`."""
    renderer = _RENDERERS.get(template)
    if renderer is None:
        expected = ", ".join(TEMPLATES)
        raise ValueError(f"unknown prompt template {template!r}; expected one of {expected}")
    system, turns = _split_system(messages, system)
    extra = [
        block
        for block in (
            tools_block(template, list(tools), tool_choice, parallel_tool_calls),
            output_block(output),
        )
        if block
    ]
    if extra:
        system = SYSTEM_SEPARATOR.join([system, *extra] if system else extra)
    if any(m["role"] == "tool" or m.get("tool_calls") for m in turns):
        turns = [_tool_text(template, m) for m in turns]
        if template != "llama3":
            turns = _merge_tool_results(turns, "user")
    return renderer(system, turns)


def render_request(template: str, req) -> str:
    """The prompt for a parsed chat or messages request, its tools and output format included."""
    return render_prompt(
        template,
        req.messages,
        req.system,
        tools=req.tools,
        tool_choice=req.tool_choice,
        parallel_tool_calls=req.parallel_tool_calls,
        output=req.output,
    )


def flatten_for_chat(req) -> list[dict]:
    """Messages for a route whose router takes chat messages itself (api_style openai):
    the system text carries the tools and output format, calls and results are written
    in chatml's syntax, so the answer is read the same way."""
    system, turns = _split_system(req.messages, req.system)
    extra = [
        block
        for block in (
            tools_block("chatml", list(req.tools), req.tool_choice, req.parallel_tool_calls),
            output_block(req.output),
        )
        if block
    ]
    if extra:
        system = SYSTEM_SEPARATOR.join([system, *extra] if system else extra)
    if any(m["role"] == "tool" or m.get("tool_calls") for m in turns):
        turns = _merge_tool_results([_tool_text("chatml", m) for m in turns], "user")
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": m["role"], "content": m["content"]} for m in turns]
