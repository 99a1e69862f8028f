"""The one internal conversation every client API is parsed into and every answer is
parsed back from: tool definitions, tool calls, the tool choice, the output format.

Messages stay plain dicts (`{"role", "content"}`, as `gateway.validation` builds them),
with two additions: an assistant message may carry `tool_calls` (a list of `ToolCall`),
and a `role: "tool"` message carries the result of one call (`tool_call_id`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: dict | None = None
    strict: bool = False

    def signature(self) -> dict:
        """The definition as the prompt shows it (OpenAI's function-tool shape)."""
        function: dict = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters or {"type": "object", "properties": {}}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call: `arguments` is a JSON object's text, as OpenAI's API carries it."""

    id: str
    name: str
    arguments: str

    def input(self) -> dict:
        """The arguments as an object (Anthropic's `input`); {} when they are not one."""
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto` (the model decides), `none` (no call), `required` (at least one call) or
    `function` (a call to `name`)."""

    mode: str = "auto"
    name: str | None = None

    @property
    def forces_call(self) -> bool:
        return self.mode in ("required", "function")


AUTO = ToolChoice()


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """`json_object` (any JSON object) or `json_schema` (an object valid against `schema`;
    `strict` makes a violation an error rather than the model's best effort)."""

    kind: str
    schema: dict | None = None
    name: str = ""
    strict: bool = False


def new_call_id(prefix: str = "call_") -> str:
    """`call_` + 24 base62 characters, like OpenAI's ids (Anthropic's: `toolu_`)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def arguments_text(value: object) -> str:
    """Arguments as the compact JSON text clients parse."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
