"""Query parameters and response shapes of the usage, request-log, ledger and billing endpoints.

Amounts are integers in micro-USD (`cost`, `amount`); `*_usd` repeats them as decimal strings for display.
"""

from __future__ import annotations

from datetime import timedelta

from rest_framework import serializers

from metering.buckets import ceil_hour, floor_hour
from metering.models import BillingPeriod, LedgerEntry, RequestLog
from metering.pricing import usd
from metering.selectors import GROUP_BY

MAX_RANGE = timedelta(days=366)
MAX_HOURLY_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(days=7)


def _check_order(attrs: dict) -> None:
    start, end = attrs.get("start"), attrs.get("end")
    if start is not None and end is not None and start >= end:
        raise serializers.ValidationError({"end": "end must be after start."})


class UsageQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(
        required=False, help_text="ISO 8601; default: 7 days before end. Floored to the hour."
    )
    end = serializers.DateTimeField(
        required=False, help_text="ISO 8601, exclusive; default: now. Rounded up to the hour."
    )
    group_by = serializers.ChoiceField(choices=GROUP_BY, default="day")

    def validate(self, attrs: dict) -> dict:
        _check_order(attrs)
        end = ceil_hour(attrs.get("end") or self.context["now"])
        start = floor_hour(attrs["start"]) if "start" in attrs else end - DEFAULT_RANGE
        if start >= end:
            raise serializers.ValidationError({"start": "start must be before end."})
        if end - start > MAX_RANGE:
            raise serializers.ValidationError({"end": "The range can span at most 366 days."})
        if attrs["group_by"] == "hour" and end - start > MAX_HOURLY_RANGE:
            raise serializers.ValidationError(
                {"group_by": "group_by=hour can span at most 31 days."}
            )
        return {"start": start, "end": end, "group_by": attrs["group_by"]}


class UsageExportQuerySerializer(UsageQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=["day", "hour"],
        default="day",
        help_text="The bucket of each row (rows are always per bucket, model and key).",
    )


class UsageCountsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.IntegerField(help_text="Micro-USD.")
    cost_usd = serializers.SerializerMethodField()

    def get_cost_usd(self, row: dict) -> str:
        return usd(row["cost"])


class UsageRowSerializer(UsageCountsSerializer):
    bucket = serializers.DateTimeField(
        allow_null=True, help_text="Start of the hour or day (group_by=hour|day)."
    )
    model = serializers.CharField(allow_null=True, help_text="group_by=model.")
    key_id = serializers.UUIDField(
        allow_null=True, help_text="group_by=key; null for a deleted key."
    )
    key_name = serializers.CharField(allow_null=True)


class UsageReportSerializer(serializers.Serializer):
    org_id = serializers.UUIDField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.ChoiceField(choices=GROUP_BY)
    granularity = serializers.ChoiceField(
        choices=["hour", "day"], help_text="The rollup buckets read."
    )
    results = UsageRowSerializer(many=True)
    totals = UsageCountsSerializer()


class RequestLogQuerySerializer(serializers.Serializer):
    key_id = serializers.UUIDField(required=False)
    model = serializers.CharField(required=False, max_length=100)
    status = serializers.RegexField(
        r"^[1-5](\d\d|xx)$",
        required=False,
        help_text='An HTTP status ("429") or a class ("5xx").',
        error_messages={
            "invalid": 'status must be an HTTP status like "429" or a class like "5xx".'
        },
    )
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        _check_order(attrs)
        return attrs


class RequestLogSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_name")
    key_id = serializers.UUIDField(source="api_key_id", allow_null=True)

    class Meta:
        model = RequestLog
        fields = [
            "request_id",
            "created_at",
            "endpoint",
            "model",
            "key_id",
            "status_code",
            "error_code",
            "latency_ms",
            "ttfb_ms",
            "streamed",
            "prompt_tokens",
            "completion_tokens",
        ]


class LedgerQuerySerializer(serializers.Serializer):
    period_id = serializers.IntegerField(required=False, min_value=1)
    kind = serializers.ChoiceField(
        choices=LedgerEntry.Kind.choices,
        required=False,
        help_text="Only entries of this kind: usage, credit (staff-posted, negative) or adjustment.",
    )


class LedgerEntrySerializer(serializers.ModelSerializer):
    amount_usd = serializers.SerializerMethodField()
    billing_period_id = serializers.IntegerField()

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "kind",
            "amount",
            "amount_usd",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "usage_hour",
            "billing_period_id",
            "idempotency_key",
            "source",
            "memo",
            "created_at",
        ]

    def get_amount_usd(self, entry: LedgerEntry) -> str:
        return usd(entry.amount)


class BillingPeriodSerializer(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.code", allow_null=True, default=None)
    cost_usd = serializers.SerializerMethodField()
    credits = serializers.IntegerField(
        help_text="Credits staff posted in the period, micro-USD (zero or negative)."
    )
    credits_usd = serializers.SerializerMethodField()
    adjustments = serializers.IntegerField(
        help_text="Manual adjustments staff posted, signed micro-USD (late-usage adjustments are in cost)."
    )
    adjustments_usd = serializers.SerializerMethodField()
    balance = serializers.IntegerField(
        help_text="What the org owes for the period, micro-USD: cost + credits + adjustments."
    )
    balance_usd = serializers.SerializerMethodField()

    class Meta:
        model = BillingPeriod
        fields = [
            "id",
            "start",
            "end",
            "status",
            "plan",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "cost_usd",
            "credits",
            "credits_usd",
            "adjustments",
            "adjustments_usd",
            "balance",
            "balance_usd",
            "opened_at",
            "closed_at",
        ]

    def get_cost_usd(self, period: BillingPeriod) -> str:
        return usd(period.cost)

    def get_credits_usd(self, period: BillingPeriod) -> str:
        return usd(period.credits)

    def get_adjustments_usd(self, period: BillingPeriod) -> str:
        return usd(period.adjustments)

    def get_balance_usd(self, period: BillingPeriod) -> str:
        return usd(period.balance)


class _Meter(serializers.Serializer):
    requests = serializers.IntegerField()
    tokens = serializers.IntegerField()


class _Period(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class _Window(serializers.Serializer):
    seconds = serializers.IntegerField()
    limit = serializers.IntegerField()
    used = serializers.IntegerField()
    remaining = serializers.IntegerField()
    resets_at = serializers.DateTimeField(
        allow_null=True, help_text="When the oldest counted request leaves the window."
    )


class _PlanRef(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class UsageSummarySerializer(serializers.Serializer):
    """The web app's allowance card for the caller's personal org."""

    org_id = serializers.UUIDField()
    plan = _PlanRef()
    period = _Period()
    limits = _Meter()
    used = _Meter()
    remaining = _Meter()
    window = _Window()
    resets_at = serializers.DateTimeField()
    near_limit = serializers.BooleanField()
    exhausted = serializers.BooleanField()
