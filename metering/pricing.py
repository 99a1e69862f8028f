"""Integer pricing: micro-USD from token counts and per-million-token prices."""

MICRO_PER_MTOK = 1_000_000


def price_micro_usd(*, prompt_tokens: int, completion_tokens: int, input_per_mtok: int, output_per_mtok: int) -> int:
    """Cost of one request in micro-USD, rounded up to the whole micro-unit."""
    numerator = prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok
    return -(-numerator // MICRO_PER_MTOK)
