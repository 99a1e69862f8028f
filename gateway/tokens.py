"""Cheap token counts: used when a router omits usage, for worst-case reservations, for
the context-window check and for Anthropic's count_tokens.

The Portal has no tokenizer per model: every count is an estimate of 4 characters per
token over the text as the router sees it (chat rendered through the route's template,
`gateway.budget.prompt_tokens`). That is close for English prose with today's BPE
tokenizers; code, non-Latin scripts and emoji take more tokens per character, so the
estimate can be low and a router may still refuse a prompt the Portal let through (the
client gets 400 `upstream_rejected_request`).

Routers' reported usage, when sent, is billed, but as a claim, not a fact: routers are run
by others, so the gateway bills at most (`gateway.calls.make_answer`)

- completion tokens: min(the max_tokens sent to the router, `ceiling` of the answer's text);
- prompt tokens: `prompt_ceiling` of the prompt the router was sent (as rendered, or the
  chat messages of an OpenAI-style route).

`ceiling(text)` = the text's UTF-8 bytes, less half its ASCII letters, plus SLACK_TOKENS:
one token per byte, except ASCII letters, counted two to a token. It is generous on
purpose, because the 4-characters estimate under-counts what real tokenizers spend and a
router must never be cut for being right: a BPE token (byte-level, or SentencePiece with
byte fallback) holds at least one byte, so CJK text, emoji, digits (split one per token
by some tokenizers), punctuation, whitespace and dense JSON all fit; letters, the one
class every tokenizer merges, get two per token, twice the estimate. SLACK_TOKENS covers
special tokens (BOS, EOS, a template's role markers); MESSAGE_TOKENS the chat template a
router applies to each message itself. English prose comes to about 2.4 times the
estimate; a claim above that is capped, flagged on the usage event and counted per router.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4
SLACK_TOKENS = 16  # special tokens: BOS/EOS, a template's markers
MESSAGE_TOKENS = 8  # per chat message, for routes that apply their own chat template

_LETTERS = str.maketrans(dict.fromkeys("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def estimate_tokens(text: str) -> int:
    """ceil(len / 4): 0 for empty text, at least 1 otherwise; deterministic and O(1)."""
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """The estimate for a text of `chars` characters (when only its length was kept)."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def ceiling(text: str) -> int:
    """The most tokens a router may bill for `text` (see the module docstring): UTF-8 bytes
    less half the ASCII letters, plus SLACK_TOKENS. Linear in the text, in C."""
    size = len(text.encode("utf-8", "surrogatepass"))
    letters = len(text) - len(text.translate(_LETTERS))
    return size - letters // 2 + SLACK_TOKENS


def prompt_ceiling(prompt: str | list[dict]) -> int:
    """`ceiling` of a prompt as sent: rendered text, or chat messages (MESSAGE_TOKENS each)."""
    if isinstance(prompt, str):
        return ceiling(prompt)
    return SLACK_TOKENS + sum(
        ceiling(str(message.get("content") or "")) - SLACK_TOKENS + MESSAGE_TOKENS
        for message in prompt
    )


def capped(claim: int, text: str | list[dict]) -> int:
    """`claim` tokens for `text` (or chat messages), at most its ceiling. A claim within
    half a token per character is below any ceiling and is not counted out."""
    if isinstance(text, str):
        if claim <= len(text) // 2 + SLACK_TOKENS:
            return claim
        return min(claim, ceiling(text))
    chars = sum(len(str(message.get("content") or "")) for message in text)
    if claim <= chars // 2 + SLACK_TOKENS + MESSAGE_TOKENS * len(text):
        return claim
    return min(claim, prompt_ceiling(text))
