"""Cheap token counts: used when a router omits usage, for worst-case reservations, for
the context-window check and for Anthropic's count_tokens.

The Portal has no tokenizer per model: every count is an estimate of 4 characters per
token over the text as the router sees it (chat rendered through the route's template,
`gateway.budget.prompt_tokens`). That is close for English prose with today's BPE
tokenizers; code, non-Latin scripts and emoji take more tokens per character, so the
estimate can be low and a router may still refuse a prompt the Portal let through (the
client gets 400 `upstream_rejected_request`). Routers' reported usage, when sent, is billed.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """ceil(len / 4): 0 for empty text, at least 1 otherwise; deterministic and O(1)."""
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """The estimate for a text of `chars` characters (when only its length was kept)."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
