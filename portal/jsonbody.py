"""JSON request bodies, read one way everywhere: the /v1 gateway (gateway/validation.py)
and the dashboard API (`JSONParser`, REST_FRAMEWORK's only parser).

Strict UTF-8 and strict JSON (no NaN or Infinity), nested at most MAX_DEPTH deep, and no
NUL or lone surrogate (`\\ud800`) in any string or key: Postgres cannot store a NUL in
text, and a lone surrogate cannot be encoded as UTF-8 for a router or a database. Each
is a 400 in the stable shape (`invalid_json`; `invalid_request_error` naming the field in
`param`), never a 500. Both can only arrive as `\\u` escapes (raw, they are invalid JSON
or invalid UTF-8), so a body without such an escape and with at most MAX_DEPTH brackets
is not walked: the checks cost one scan in C on the common path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rest_framework import parsers

from portal.errors import PortalError

MAX_DEPTH = 64  # arrays and objects inside one another; tool schemas use a fraction of it

# `\u0000`, or an escape in the surrogate range (a pair is fine: it decodes to one character).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def loads(raw: bytes) -> Any:
    """The decoded body, or PortalError (400)."""
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise PortalError("invalid_json", "The request body is not valid UTF-8.") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PortalError(
            "invalid_json",
            f"The request body is not valid JSON: {exc.msg}"
            f" (line {exc.lineno}, column {exc.colno}).",
        ) from exc
    except RecursionError as exc:
        raise too_deep() from exc
    except ValueError as exc:  # NaN, over-long integers
        raise PortalError("invalid_json", f"The request body is not valid JSON: {exc}.") from exc
    strings = _SUSPECT_ESCAPE.search(text) is not None
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if strings or deep:
        check(value, strings=strings)
    return value


def too_deep() -> PortalError:
    return PortalError(
        "invalid_json", f"The request body is nested more than {MAX_DEPTH} levels deep."
    )


def check(value: Any, *, strings: bool = True) -> None:
    """Raise PortalError for nesting deeper than MAX_DEPTH or (with `strings`) a string or
    key holding a NUL or a lone surrogate; `param` is its path (`messages[0].content`)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise too_deep()
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if strings and bad_text(key):
                    raise _bad_string(key, child_path)
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                raise too_deep()
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif strings and isinstance(item, str) and bad_text(item):
            raise _bad_string(item, path or None)


def bad_text(text: str) -> bool:
    """True when `text` holds a NUL or a lone surrogate."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _bad_string(text: str, param: str | None) -> PortalError:
    what = "a NUL character (\\u0000)" if "\x00" in text else "a lone UTF-16 surrogate"
    where = f"'{_printable(param)}'" if param else "The request body"
    return PortalError(
        "invalid_request_error",
        f"{where} contains {what}, which is not allowed.",
        param=_printable(param) if param else None,
    )


def _printable(text: str) -> str:
    """`text` safe to echo back in a JSON error (keys may hold what is being refused)."""
    if not bad_text(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser reading bodies as `loads` does: a bad one is a 400 in the stable
    shape (portal.errors.drf_exception_handler renders the PortalError)."""

    def parse(self, stream, media_type=None, parser_context=None):
        return loads(stream.read() if stream is not None else b"")
