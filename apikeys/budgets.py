"""A key's budget: a spend cap in micro-USD per period (the billing period, a UTC day or a
UTC calendar month). Admission reserves each request's worst-case cost against it and
settlement replaces that with the cost billed (gateway/lua/admit.lua, release.lua), so
concurrent requests never take it past the cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apikeys.models import BudgetPeriod

MAX_AMOUNT = 10**15  # micro-USD: a billion dollars, far above any real cap


@dataclass(frozen=True, slots=True)
class KeyBudget:
    amount: int  # micro-USD per period
    period: str  # a BudgetPeriod value
    start_ms: int  # the current period's bounds
    end_ms: int


def period_bounds(
    *, period: str, now: datetime, billing_start: datetime, billing_end: datetime
) -> tuple[datetime, datetime]:
    """The budget period holding `now`."""
    if period == BudgetPeriod.BILLING_PERIOD:
        return billing_start, billing_end
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == BudgetPeriod.MONTH:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following
    raise ValueError(f"unknown budget period {period!r}")


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def key_budget(
    *,
    amount: int | None,
    period: str,
    now: datetime,
    billing_start: datetime,
    billing_end: datetime,
) -> KeyBudget | None:
    """The key's budget in force at `now`, or None for a key without one."""
    if amount is None or not period:
        return None
    start, end = period_bounds(
        period=period, now=now, billing_start=billing_start, billing_end=billing_end
    )
    return KeyBudget(amount=amount, period=period, start_ms=_ms(start), end_ms=_ms(end))
