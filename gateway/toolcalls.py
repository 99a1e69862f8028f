"""How each prompt-template family writes a tool call, and how calls are found in what a
model writes back, whole or streamed.

| family          | a call                                                             |
|-----------------|--------------------------------------------------------------------|
| chatml, plain   | `<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`      |
| llama3          | `<function=f>{...}</function>` (Llama 3.1's custom-tool format)     |
| gemma           | a ```` ```tool_call ```` fence holding `{"name": "f", "arguments": {...}}` |

`CallScanner` reads a model's text in pieces: text that cannot begin a call marker passes
on at once, a call is reported when its closing marker arrives. A whole answer is parsed
by feeding it in one piece, so a stream split anywhere yields the same text and calls.
Whitespace next to a call is dropped (models put newlines around calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
)


class BadCall(ValueError):
    """A call the model started but did not write correctly."""


@dataclass(frozen=True, slots=True)
class Syntax:
    open: str
    close: str
    instruction: str
    named: bool  # the function name sits in the open marker (`<function=NAME>`)

    def render(self, name: str, arguments: str) -> str:
        try:
            value = json.loads(arguments)
        except ValueError:
            value = arguments  # history as the client sent it, even if it was not JSON
        if self.named:
            body = arguments if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return f"{self.open}{name}>{body}{self.close}"
        payload = json.dumps({"name": name, "arguments": value}, ensure_ascii=False)
        return f"{self.open}\n{payload}\n{self.close}"

    def parse(self, inner: str) -> tuple[str, str]:
        """(name, arguments as compact JSON text) of the text between the markers."""
        if self.named:
            name, sep, rest = inner.partition(">")
            if not sep or not name.strip():
                raise BadCall("the call names no function")
            return name.strip(), _arguments(rest.strip(), name.strip())
        try:
            payload = json.loads(inner.strip())
        except ValueError as exc:
            raise BadCall(f"the call is not valid JSON ({exc})") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("name"), str)
            or not payload["name"]
        ):
            raise BadCall('the call must be a JSON object with a "name" and "arguments"')
        arguments = payload.get("arguments", payload.get("parameters", {}))
        if isinstance(arguments, str):
            return payload["name"], _arguments(arguments, payload["name"])
        if not isinstance(arguments, dict):
            raise BadCall(f"the arguments of {payload['name']} are not a JSON object")
        return payload["name"], _compact(arguments)


def _compact(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _arguments(text: str, name: str) -> str:
    try:
        value = json.loads(text) if text else {}
    except ValueError as exc:
        raise BadCall(f"the arguments of {name} are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadCall(f"the arguments of {name} are not a JSON object")
    return _compact(value)


_XML = Syntax(
    open="<tool_call>",
    close="</tool_call>",
    instruction=(
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    ),
    named=False,
)
SYNTAXES = {
    "chatml": _XML,
    "plain": _XML,
    "llama3": Syntax(
        open="<function=",
        close="</function>",
        instruction=(
            "To call a function, reply with <function=FUNCTION_NAME>{ARGUMENTS_AS_JSON}</function>, "
            "one such tag per call."
        ),
        named=True,
    ),
    "gemma": Syntax(
        open="```tool_call",
        close="```",
        instruction=(
            "To call a function, reply with a ```tool_call fenced block holding a json object with "
            "function name and arguments:\n"
            '```tool_call\n{"name": <function-name>, "arguments": <args-json-object>}\n```'
        ),
        named=False,
    ),
}


def syntax_for(template: str) -> Syntax:
    return SYNTAXES.get(template, _XML)


@dataclass(frozen=True, slots=True)
class Found:
    """A call the scanner read: its name and arguments, or `error` when it was malformed."""

    name: str = ""
    arguments: str = "{}"
    error: str | None = None


class CallScanner:
    """Feed a model's text in order; each `feed` returns (text to pass on, calls completed)."""

    __slots__ = ("_after_call", "_held", "_inside", "_syntax", "calls", "errors")

    def __init__(self, syntax: Syntax):
        self._syntax = syntax
        self._held = (
            ""  # outside a call: text that may begin the open marker, or trailing whitespace
        )
        self._inside: str | None = None  # inside a call: its text so far
        self._after_call = False  # whitespace right after a call is dropped
        self.calls: list[Found] = []
        self.errors: list[str] = []

    def feed(self, text: str) -> tuple[str, list[Found]]:
        out: list[str] = []
        found: list[Found] = []
        buffer = text
        while buffer:
            if self._inside is not None:
                self._inside += buffer
                buffer = ""
                end = self._inside.find(self._syntax.close)
                if end == -1:
                    break
                inner, buffer = self._inside[:end], self._inside[end + len(self._syntax.close) :]
                self._inside = None
                self._after_call = True
                found.append(self._read(inner))
                continue
            buffer = self._held + buffer
            self._held = ""
            if self._after_call:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                self._after_call = False
            at = buffer.find(self._syntax.open)
            if at != -1:
                out.append(buffer[:at].rstrip())
                self._inside = ""
                buffer = buffer[at + len(self._syntax.open) :]
                continue
            keep = _marker_prefix(buffer, self._syntax.open)
            body = buffer[: len(buffer) - keep]
            stripped = body.rstrip()
            self._held = body[len(stripped) :] + buffer[len(buffer) - keep :]
            out.append(stripped)
            buffer = ""
        self.calls.extend(found)
        return "".join(out), found

    def flush(self) -> tuple[str, list[Found]]:
        """At the end: held text, and a call left open is malformed."""
        found = []
        if self._inside is not None:
            found.append(Found(error=f"a call was not closed with {self._syntax.close}"))
            self._inside = None
            self.calls.extend(found)
        held, self._held = self._held, ""
        if self.calls:
            held = held.rstrip()
        return held, found

    def _read(self, inner: str) -> Found:
        try:
            name, arguments = self._syntax.parse(inner)
        except BadCall as exc:
            return Found(error=str(exc))
        return Found(name=name, arguments=arguments)


def _marker_prefix(buffer: str, marker: str) -> int:
    """Length of the longest end of `buffer` that begins `marker`."""
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if buffer.endswith(marker[:size]):
            return size
    return 0


def parse(text: str, syntax: Syntax) -> tuple[str, list[Found]]:
    """A whole answer: (its text without the calls, the calls in order)."""
    scanner = CallScanner(syntax)
    text_a, calls_a = scanner.feed(text)
    text_b, calls_b = scanner.flush()
    return text_a + text_b, calls_a + calls_b
