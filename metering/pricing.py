"""Integer pricing: micro-USD from token counts and per-million-token prices."""

from decimal import Decimal

MICRO_PER_MTOK = 1_000_000


def price_micro_usd(
    *, prompt_tokens: int, completion_tokens: int, input_per_mtok: int, output_per_mtok: int
) -> int:
    """Cost of one request in micro-USD, rounded up to the whole micro-unit. Integers in, integer out."""
    if not (
        type(prompt_tokens) is int
        and type(completion_tokens) is int
        and type(input_per_mtok) is int
        and type(output_per_mtok) is int
    ):
        raise TypeError("token counts and prices must be ints: no floats near billing")
    numerator = prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok
    return -(-numerator // MICRO_PER_MTOK)


def usd(micro_usd: int) -> str:
    """A micro-USD amount as a decimal string for display: 1234 -> "0.001234"."""
    return f"{Decimal(micro_usd).scaleb(-6):.6f}"
