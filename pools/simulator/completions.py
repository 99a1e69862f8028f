"""What a simulated completion says: request validation, deterministic text, answer shapes.

Counting rules, chosen so the Portal's own ~4-characters-a-token estimate agrees with
the simulator's usage:

- prompt_tokens = ceil(len(prompt) / 4), in characters (0 for an empty prompt);
- a completion token is a three-letter word plus a space (exactly 4 characters), read
  from a fixed pseudo-random run at an offset given by the CRC-32 of the prompt, so the
  same prompt always gets the same text and len(text) == 4 * completion_tokens;
- a tool call or JSON answer (structured.py) is cut into 4-character tokens, the last
  possibly shorter, so completion_tokens = ceil(len(text) / 4) there too.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from .http1 import json_dumps

VOCABULARY = (
    "the and for are but not you all any can had her was one our out day get has him his how "
    "man new now old see two way who boy did its let put say she too use sky sun sea air ice "
    "red big map art cup dog cat owl fox bee ant elk yak emu gnu ram hen cow pig eel ray jay "
    "oak elm ash fig nut pea yam bun jam tea pie egg"
).split()

DONE_EVENT = b"data: [DONE]\n\n"

_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "timeout")
_INT_FIELDS = ("top_k", "prompt_type")
_STRING_FIELDS = ("client_reference", "prompt_template")


@dataclass(slots=True, frozen=True)
class CompletionRequest:
    session_id: int
    prompt: str
    stream: bool
    max_tokens: int | None
    client_reference: str | None
    body: dict[str, Any]


def completion_request_parse(raw: bytes, *, path_session: str | None) -> CompletionRequest:
    """Validate a completions body as a router would; ValueError says what is wrong.

    The session comes from the path when the path has one, else from the body.
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")

    if path_session is not None:
        try:
            session_id = int(path_session)
        except ValueError:
            message = f"session_id in the path must be an integer, got {path_session!r}"
            raise ValueError(message) from None
    else:
        session_id = body.get("session_id")
        if not _is_int(session_id):
            raise ValueError("session_id must be an integer")

    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError("prompt is required and must be a string")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ValueError("stream must be true or false")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 0):
        raise ValueError("max_tokens must be an integer >= 0")
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{name} must be a number")
    for name in _INT_FIELDS:
        value = body.get(name)
        if value is not None and not _is_int(value):
            raise ValueError(f"{name} must be an integer")
    for name in _STRING_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string")

    return CompletionRequest(
        session_id=session_id,
        prompt=prompt,
        stream=stream,
        max_tokens=max_tokens,
        client_reference=body.get("client_reference"),
        body=body,
    )


def prompt_token_count(prompt: str) -> int:
    return (len(prompt) + 3) // 4


def completion_tokens(prompt: str, count: int) -> list[str]:
    """`count` tokens ("word "), the same for the same prompt."""
    start = zlib.crc32(prompt.encode("utf-8", "surrogatepass")) % len(_TOKEN_TABLE)
    tokens = list(_TOKEN_TABLE[start : start + count])
    while len(tokens) < count:
        tokens.extend(_TOKEN_TABLE[: count - len(tokens)])
    return tokens


def text_tokens(text: str) -> list[str]:
    """`text` as a stream would send it: 4 characters a token."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def _token_table(size: int) -> tuple[str, ...]:
    """A fixed pseudo-random run of tokens; a prompt's hash picks where its answer starts."""
    state, table = 0x9E3779B9, []
    for _ in range(size):
        # xorshift32: cheap, and good enough to look like varied text.
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        table.append(VOCABULARY[state % len(VOCABULARY)] + " ")
    return tuple(table)


_TOKEN_TABLE = _token_table(8192)


def usage(*, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None,
    usage: dict[str, int] | None,
) -> dict[str, Any]:
    """A `text_completion` object: the whole answer, or (with a token's text) one stream chunk."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json_dumps(payload) + b"\n\n"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
