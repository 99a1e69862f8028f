"""Key budget counters in fast state, and starting them from Postgres.

`budget:<key>:<period start ms>` holds the micro-USD a key has spent in its budget
period (apikeys.budgets) plus what its requests in flight reserved. Admission reserves
each request's worst-case cost into it and refuses a request that would take it past the
key's budget; settlement replaces the reservation with the cost billed. When the counter
is missing (a new period, Redis lost its data) it starts from the usage events' costs.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Sum

from apikeys.selectors import key_lineage
from infra import fastkeys, faststate
from metering.models import UsageEvent

_GRACE_MS = 86_400_000  # counters outlive their period by a day


def budget_key(*, key_id: str, period_start_ms: int) -> str:
    return fastkeys.KEY_BUDGET(key_id=key_id, period_start_ms=period_start_ms)


def key_spend_between(*, org_id: object, key_id: object, start: datetime, end: datetime) -> int:
    """The micro-USD billed to a key's usage events in [start, end), with those of the keys
    it replaced by rotation (a rotated key's spend carries over)."""
    row = UsageEvent.objects.filter(
        org_id=org_id,
        api_key_id__in=key_lineage(key_id=key_id),
        created_at__gte=start,
        created_at__lt=end,
    ).aggregate(cost=Sum("cost"))
    return int(row["cost"] or 0)


def budget_seed(*, key_id: str, period_start_ms: int, period_end_ms: int, spent: int, now_ms: int):
    """Start the key's budget counter from the durable spend, unless another process did."""
    faststate.get_client().set(
        budget_key(key_id=key_id, period_start_ms=period_start_ms),
        spent,
        nx=True,
        px=max(period_end_ms - now_ms, 0) + _GRACE_MS,
    )
