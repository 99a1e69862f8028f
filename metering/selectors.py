"""Usage reads for the dashboard: what an org used in a time range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from accounts.models import Organization
from metering.models import UsageEvent


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    tokens: int


def org_usage_between(*, org: Organization, start: datetime, end: datetime) -> UsageTotals:
    row = UsageEvent.objects.filter(org=org, created_at__gte=start, created_at__lt=end).aggregate(
        requests=Count("id"),
        prompt=Coalesce(Sum("prompt_tokens"), 0),
        completion=Coalesce(Sum("completion_tokens"), 0),
    )
    return UsageTotals(requests=row["requests"], tokens=row["prompt"] + row["completion"])
