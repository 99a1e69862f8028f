"""Durable usage writes from the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from metering.models import RequestLog, UsageEvent
from metering.pricing import price_micro_usd


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    status_code: int
    latency_ms: int
    created_at: datetime
    org_id: str | None = None
    api_key_id: str | None = None
    model_name: str = ""
    route_id: int | None = None
    router_id: int | None = None
    error_code: str = ""
    ttfb_ms: int | None = None
    streamed: bool = False
    client_ip: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    input_per_mtok: int = 0
    output_per_mtok: int = 0


def request_record(*, record: RequestRecord) -> None:
    """Write the request log and, when tokens were served, its usage event, in one transaction.

    Idempotent on the request id: writing the same request twice changes nothing.
    """
    served = record.prompt_tokens + record.completion_tokens > 0 and record.org_id is not None
    try:
        with transaction.atomic():
            RequestLog.objects.create(
                request_id=record.request_id,
                org_id=record.org_id,
                api_key_id=record.api_key_id,
                endpoint=record.endpoint,
                model_name=record.model_name,
                route_id=record.route_id,
                router_id=record.router_id,
                status_code=record.status_code,
                error_code=record.error_code,
                latency_ms=record.latency_ms,
                ttfb_ms=record.ttfb_ms,
                streamed=record.streamed,
                client_ip=record.client_ip,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                created_at=record.created_at,
            )
            if served:
                UsageEvent.objects.create(
                    request_id=record.request_id,
                    org_id=record.org_id,
                    api_key_id=record.api_key_id,
                    model_name=record.model_name,
                    prompt_tokens=record.prompt_tokens,
                    completion_tokens=record.completion_tokens,
                    estimated=record.estimated,
                    cost=price_micro_usd(
                        prompt_tokens=record.prompt_tokens,
                        completion_tokens=record.completion_tokens,
                        input_per_mtok=record.input_per_mtok,
                        output_per_mtok=record.output_per_mtok,
                    ),
                    created_at=record.created_at,
                )
    except IntegrityError:
        if not RequestLog.objects.filter(request_id=record.request_id).exists():
            raise
