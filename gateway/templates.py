"""Chat messages rendered into the single prompt string a Cortensor router takes.

Every template puts the system text first (the separate `system` argument, then any
system messages, joined by a blank line), then the turns in order, and ends by opening
the assistant's turn so the model writes the answer.
"""

from __future__ import annotations

TEMPLATES = ("chatml", "gemma", "llama3", "plain")
SYSTEM_SEPARATOR = "\n\n"


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
        out.append(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>")
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


def render_prompt(template: str, messages: list[dict], system: str = "") -> str:
    """The prompt for `messages` (normalized by `gateway.validation`) in `template`."""
    renderer = _RENDERERS.get(template)
    if renderer is None:
        expected = ", ".join(TEMPLATES)
        raise ValueError(f"unknown prompt template {template!r}; expected one of {expected}")
    system, turns = _split_system(messages, system)
    return renderer(system, turns)
