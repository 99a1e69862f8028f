"""Usage for tests: requests written through the gateway's own service at chosen times, usage
events written directly, and the totals of events, rollups and ledger entries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from django.db.models import Count, Sum

from metering.models import LedgerEntry, UsageEvent, UsageRollup
from metering.services import RequestRecord, request_record

# A Monday: allowance and billing periods start on Mondays.
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
_ids = itertools.count()
_event_ids = itertools.count()


def record(
    org,
    *,
    at: datetime,
    key=None,
    model: str = "gemma-4-26b",
    prompt: int = 10,
    completion: int = 5,
    input_per_mtok: int = 100_000,
    output_per_mtok: int = 400_000,
    status: int = 200,
    error_code: str = "",
) -> str:
    """One gateway request by `org` (and `key`) at `at`; a usage event when it served tokens."""
    request_id = f"req_t{next(_ids):020d}"
    request_record(
        record=RequestRecord(
            request_id=request_id,
            endpoint="chat.completions",
            status_code=status,
            latency_ms=12,
            created_at=at,
            org_id=org.pk,
            api_key_id=key.pk if key is not None else None,
            model_name=model,
            error_code=error_code,
            prompt_tokens=prompt,
            completion_tokens=completion,
            input_per_mtok=input_per_mtok,
            output_per_mtok=output_per_mtok,
        )
    )
    return request_id


def record_usage(org, *, at: datetime, prompt: int, completion: int = 0, key=None) -> UsageEvent:
    """A usage event written directly (no request log, no rollup), costing nothing."""
    return UsageEvent.objects.create(
        request_id=f"req_test{next(_event_ids):020d}",
        org=org,
        api_key=key,
        model_name="gemma-4-26b",
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=False,
        cost=0,
        created_at=at,
    )


def event_totals(org=None, **filters) -> tuple[int, int, int, int]:
    """(requests, prompt, completion, cost) of the usage events: the truth."""
    events = UsageEvent.objects.filter(**filters)
    if org is not None:
        events = events.filter(org=org)
    row = events.aggregate(
        n=Count("id"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost")
    )
    return row["n"], row["p"] or 0, row["c"] or 0, row["cost"] or 0


def rollup_totals(org=None, *, granularity: str = "hour", **filters) -> tuple[int, int, int, int]:
    rows = UsageRollup.objects.filter(granularity=granularity, **filters)
    if org is not None:
        rows = rows.filter(org=org)
    row = rows.aggregate(
        n=Sum("requests"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost")
    )
    return row["n"] or 0, row["p"] or 0, row["c"] or 0, row["cost"] or 0


def ledger_usage_totals(org=None) -> tuple[int, int, int, int]:
    """(requests, prompt, completion, amount) of the ledger's usage-derived entries."""
    entries = LedgerEntry.objects.filter(usage_hour__isnull=False)
    if org is not None:
        entries = entries.filter(org=org)
    row = entries.aggregate(
        n=Sum("requests"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"), a=Sum("amount")
    )
    return row["n"] or 0, row["p"] or 0, row["c"] or 0, row["a"] or 0
