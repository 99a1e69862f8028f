"""Cheap token counts: used when a router omits usage, and for worst-case reservations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.validation import InferenceRequest

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """ceil(len / 4): 0 for empty text, at least 1 otherwise; deterministic and O(1)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def worst_case_tokens(
    req: InferenceRequest, prompt_tokens: int, default_max_output: int, model_max_output: int
) -> int:
    """The most tokens the request can use: its prompt plus the capped output allowance."""
    return prompt_tokens + min(req.max_tokens or default_max_output, model_max_output)
