"""Closing billing periods at their end, and opening the next.

Once a period's end is past by the ledger lag (every hour in it is closed), it is
brought in line with its usage events, closed with totals from the ledger, the
subscription's allowance period moves on, and the next period opens. An entry for
an hour of a closed period (a very late event) is booked into the period holding `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from accounts.selectors import active_subscription_or_none, active_subscriptions
from accounts.services import subscription_advance_period
from metering.ledger import ledger_lag, ledger_post_range
from metering.models import BillingPeriod
from metering.periods import billing_period_for, period_totals


@dataclass
class CloseSummary:
    periods_closed: int = 0
    subscriptions_advanced: int = 0


def billing_period_close(*, period_id: int, now: datetime, lag: timedelta | None = None) -> bool:
    """Close one due period: post its hours, freeze its totals, advance the plan period, open the next.

    Idempotent: closing a closed period (a second worker, a retried task) changes nothing.
    """
    lag = ledger_lag() if lag is None else lag
    period = BillingPeriod.objects.get(pk=period_id)
    if period.status == BillingPeriod.Status.CLOSED or period.end + lag > now:
        return False
    # Every hour of the period is closed: bring the ledger in line with its events first.
    ledger_post_range(org_id=period.org_id, start=period.start, end=period.end, now=now, lag=lag)
    with transaction.atomic():
        period = BillingPeriod.objects.select_for_update().get(pk=period_id)
        if period.status == BillingPeriod.Status.CLOSED:
            return False
        for name, value in period_totals(period_ids=[period.pk])[period.pk].items():
            setattr(period, name, value)
        period.status = BillingPeriod.Status.CLOSED
        period.closed_at = now
        period.save(
            update_fields=[
                "status",
                "closed_at",
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "cost",
                "balance",
            ]
        )
        sub = active_subscription_or_none(org_id=period.org_id)
        if sub is not None:
            subscription_advance_period(subscription=sub, now=now)
        billing_period_for(org_id=period.org_id, at=now, now=now)
    return True


def billing_periods_close_due(
    *, now: datetime, lag: timedelta | None = None, limit: int = 1000
) -> CloseSummary:
    """Close every period whose end is past by the ledger lag; advance ended subscription periods."""
    lag = ledger_lag() if lag is None else lag
    summary = CloseSummary()
    due = (
        BillingPeriod.objects.filter(status=BillingPeriod.Status.OPEN, end__lte=now - lag)
        .order_by("end", "id")
        .values_list("id", flat=True)[:limit]
    )
    for period_id in list(due):
        if billing_period_close(period_id=period_id, now=now, lag=lag):
            summary.periods_closed += 1
    # Orgs with no billing activity still get their allowance period moved on.
    ended = active_subscriptions().filter(current_period_end__lte=now).order_by("id")[:limit]
    for sub in list(ended):
        subscription_advance_period(subscription=sub, now=now)
        summary.subscriptions_advanced += 1
    return summary
