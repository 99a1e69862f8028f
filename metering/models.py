"""Durable usage and money: request logs, usage events, rollups, the billing ledger and periods.

Token counts and amounts are integers; amounts are micro-USD (1 USD = 1_000_000).
"""

import uuid

from django.db import models
from django.db.models import Q

from accounts.models import Organization, Plan
from apikeys.models import ApiKey

# _HOT_TABLE_NOTE: usage_events and request_logs take one row each per gateway request, so
# every index and check on them is paid on the request path. Their org and key columns
# carry no database foreign key: each would run a lookup and take a KEY SHARE lock on
# the org's (and the key's) row per insert, so every concurrent request of one org
# would share a lock on one hot row (a multixact per commit). Orgs and keys are never
# deleted on the request path, and the ORM applies on_delete when one is. The org
# column's own index is dropped too: (org, created_at) serves every org lookup; and
# request_id is unique through a constraint, without the LIKE index `unique=True`
# adds on Postgres (nothing searches request ids by prefix).

# Rollups key "no API key" (a deleted key) with this id: unique buckets need non-null columns.
NO_KEY = uuid.UUID(int=0)


class UsageEvent(models.Model):
    request_id = models.CharField(max_length=40)
    # No database-level foreign keys on the two per-request tables (see _HOT_TABLE_NOTE);
    # Django still applies on_delete when an org or key is deleted through the ORM.
    org = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    model_name = models.CharField(max_length=100)
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    estimated = models.BooleanField(
        default=False, help_text="Counted by the Portal; the router sent no usage."
    )
    usage_capped = models.BooleanField(
        default=False,
        help_text="The router claimed more tokens than the Portal allows (gateway/tokens.py); billed at the cap.",
    )
    cost = models.BigIntegerField(help_text="Micro-USD.")
    created_at = models.DateTimeField()
    rolled_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the rollup counted this event (empty: not yet). Set in the rollup's own transaction.",
    )

    class Meta:
        db_table = "usage_events"
        constraints = [
            models.UniqueConstraint(fields=["request_id"], name="usage_events_request_id_key")
        ]
        indexes = [
            models.Index(fields=["org", "created_at"], name="usage_events_org_time_idx"),
            # The rollup's work queue: small, because counted events leave it.
            models.Index(
                fields=["id"],
                condition=Q(rolled_up_at__isnull=True),
                name="usage_events_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RequestLog(models.Model):
    """One row per gateway request: who, what, where it went and how it ended. No prompt text."""

    request_id = models.CharField(max_length=40)
    org = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    endpoint = models.CharField(max_length=40)
    model_name = models.CharField(max_length=100, blank=True, default="")
    route_id = models.BigIntegerField(null=True, blank=True)
    router_id = models.BigIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=60, blank=True, default="")
    latency_ms = models.PositiveIntegerField()
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    streamed = models.BooleanField(default=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    unbilled_tokens = models.PositiveIntegerField(
        default=0,
        help_text="Router tokens of answers the Portal discarded and asked again (a broken tool call or JSON); not billed.",
    )
    usage_capped = models.BooleanField(
        default=False,
        help_text="The router claimed more tokens than the Portal allows (gateway/tokens.py); billed at the cap.",
    )
    created_at = models.DateTimeField()

    class Meta:
        db_table = "request_logs"
        constraints = [
            models.UniqueConstraint(fields=["request_id"], name="request_logs_request_id_key")
        ]
        indexes = [
            models.Index(fields=["org", "created_at"], name="request_logs_org_time_idx"),
            models.Index(fields=["created_at"], name="request_logs_time_idx"),
            # Over-reporting routers on the ops dashboard: small, as such answers are rare.
            models.Index(
                fields=["router_id", "created_at"],
                condition=Q(usage_capped=True),
                name="request_logs_capped_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.request_id


class UsageRollup(models.Model):
    """Usage of one (org, key, model) in one hour or day bucket [bucket_start, +1 hour/day).

    Always equal to the sum of the bucket's counted events (`rolled_up_at` set): the
    incremental rollup adds events and marks them in one transaction; a backfill
    recomputes buckets from the counted events.
    """

    class Granularity(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    api_key_id = models.UUIDField(help_text="The key's id; all zeros when the key is gone.")
    model_name = models.CharField(max_length=100)
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(default=0, help_text="Micro-USD.")
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "usage_rollups"
        constraints = [
            models.UniqueConstraint(
                fields=["org", "granularity", "bucket_start", "api_key_id", "model_name"],
                name="usage_rollups_bucket_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["granularity", "bucket_start"], name="usage_rollups_time_idx"),
            models.Index(fields=["granularity", "updated_at"], name="usage_rollups_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.granularity} {self.bucket_start:%Y-%m-%dT%H} {self.model_name}"


class BillingPeriod(models.Model):
    """An org's billing period [start, end): open while usage is booked into it, then closed with totals."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    requests = models.BigIntegerField(default=0, help_text="Set at close, from the ledger.")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(
        default=0, help_text="Usage charges booked in the period, micro-USD."
    )
    balance = models.BigIntegerField(
        default=0, help_text="Every entry booked in the period, credits included."
    )
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "billing_periods"
        constraints = [
            models.UniqueConstraint(fields=["org", "start"], name="billing_periods_org_start_uniq"),
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="billing_periods_end_after_start"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "end"], name="billing_periods_due_idx"),
            models.Index(fields=["org", "end"], name="billing_periods_org_end_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} [{self.start:%Y-%m-%d}, {self.end:%Y-%m-%d}) {self.status}"


class LedgerEntry(models.Model):
    """One signed money movement: positive charges the org, negative credits it.

    Usage entries (one per org and closed hour) and the adjustments that follow late
    events carry `usage_hour`; their sum equals the org's priced usage events exactly.
    """

    class Kind(models.TextChoices):
        USAGE = "usage"
        CREDIT = "credit"
        ADJUSTMENT = "adjustment"

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    billing_period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, related_name="entries"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Signed micro-USD.")
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    usage_hour = models.DateTimeField(
        null=True, blank=True, help_text="The hour of usage this entry accounts for."
    )
    idempotency_key = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=200, help_text="What the entry was computed from.")
    memo = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "billing_ledger"
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="usage", amount__gte=0)
                | Q(kind="credit", amount__lt=0)
                | Q(kind="adjustment"),
                name="billing_ledger_sign_by_kind",
            )
        ]
        indexes = [
            models.Index(fields=["org", "usage_hour"], name="billing_ledger_org_hour_idx"),
            models.Index(fields=["org", "created_at"], name="billing_ledger_org_time_idx"),
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class MeteringCursor(models.Model):
    """A durable watermark of a scheduled job: how far it got, and when it last ran."""

    name = models.CharField(max_length=40, primary_key=True)
    position = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "metering_cursors"

    def __str__(self) -> str:
        return f"{self.name} @ {self.position}"
