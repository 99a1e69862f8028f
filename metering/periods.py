"""Billing periods: [start, end) per org, aligned with the plan subscription's allowance periods.

Periods are opened on demand (the first entry booked into them) and when the one
before closes (`metering.closing`).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Coalesce

from accounts.selectors import active_subscription_or_none
from accounts.services import PERIOD_LENGTH, period_containing
from metering.models import BillingPeriod, LedgerEntry


def _containing(org_id: UUID, at: datetime) -> BillingPeriod | None:
    return BillingPeriod.objects.filter(org_id=org_id, start__lte=at, end__gt=at).first()


def period_bounds(*, org_id: UUID, at: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the org's period holding `at`, whether or not its row exists yet.

    An existing row wins; otherwise the subscription's grid of weekly periods (its
    current period, stepped by whole periods), clipped so it never overlaps a neighbour.
    """
    row = _containing(org_id, at)
    if row is not None:
        return row.start, row.end
    sub = active_subscription_or_none(org_id=org_id)
    if sub is not None and sub.current_period_start <= at < sub.current_period_end:
        start, end = sub.current_period_start, sub.current_period_end
    elif sub is not None:
        anchor = (
            sub.current_period_end if at >= sub.current_period_end else sub.current_period_start
        )
        start = anchor + ((at - anchor) // PERIOD_LENGTH) * PERIOD_LENGTH
        end = start + PERIOD_LENGTH
    else:
        start, end = period_containing(now=at)
    around = BillingPeriod.objects.filter(org_id=org_id).aggregate(
        prev_end=Max("end", filter=Q(end__lte=at)), next_start=Min("start", filter=Q(start__gt=at))
    )
    if around["prev_end"] is not None:
        start = max(start, around["prev_end"])
    if around["next_start"] is not None:
        end = min(end, around["next_start"])
    return start, end


def billing_period_for(*, org_id: UUID, at: datetime, now: datetime) -> BillingPeriod:
    """The org's period holding `at`, opened now if it has no row yet (safe under concurrent callers)."""
    row = _containing(org_id, at)
    if row is not None:
        return row
    start, end = period_bounds(org_id=org_id, at=at)
    sub = active_subscription_or_none(org_id=org_id)
    try:
        with transaction.atomic():
            return BillingPeriod.objects.create(
                org_id=org_id, plan=sub.plan if sub else None, start=start, end=end, opened_at=now
            )
    except IntegrityError:
        return BillingPeriod.objects.get(org_id=org_id, start=start)


def period_totals(*, period_ids: list[int]) -> dict[int, dict]:
    """Ledger totals per period: requests, tokens, usage cost and the balance of every entry.

    balance = cost + credits + adjustments: what the org owes for the period. `credits`
    (negative) and `adjustments` (signed) are the entries staff posted
    (`metering.adjustments`); adjustments for late usage carry a usage hour and are cost.
    """
    usage = Q(usage_hour__isnull=False)
    manual = Q(usage_hour__isnull=True)
    rows = (
        LedgerEntry.objects.filter(billing_period_id__in=period_ids)
        .values("billing_period_id")
        .annotate(
            entries=Count("id"),
            requests=Coalesce(Sum("requests"), 0),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            cost=Coalesce(Sum("amount", filter=usage), 0),
            balance=Coalesce(Sum("amount"), 0),
            credits=Coalesce(Sum("amount", filter=manual & Q(kind=LedgerEntry.Kind.CREDIT)), 0),
            adjustments=Coalesce(
                Sum("amount", filter=manual & Q(kind=LedgerEntry.Kind.ADJUSTMENT)), 0
            ),
        )
        .order_by()
    )
    empty = dict.fromkeys(
        (
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "balance",
            "credits",
            "adjustments",
        ),
        0,
    )
    totals = {pid: dict(empty) for pid in period_ids}
    for row in rows:
        totals[row["billing_period_id"]] = {k: row[k] for k in empty}
    return totals
