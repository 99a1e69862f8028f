"""API keys: only an HMAC of the secret is stored, with a prefix and last four for display."""

import uuid

from django.db import models

from accounts.models import Organization, User


class BudgetPeriod(models.TextChoices):
    BILLING_PERIOD = "billing_period"
    DAY = "day"
    MONTH = "month"


class ApiKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"
        DISABLED = "disabled"

    class Provider(models.TextChoices):
        LOCAL = "local"
        UNKEY = "unkey"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.LOCAL)
    external_id = models.CharField(
        max_length=100, blank=True, default="", help_text="The provider's key id."
    )
    key_hash = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text="HMAC-SHA256 of the secret (local keys).",
    )
    prefix = models.CharField(max_length=24, help_text="The visible start of the key.")
    last_four = models.CharField(max_length=4)
    allowed_models = models.JSONField(
        null=True,
        blank=True,
        help_text="Model names this key may use; empty means every entitled model.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    # The key's own limits, each at most the organization's (empty: the organization's).
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    budget_amount = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The key's spend cap per budget period, in micro-USD."
    )
    budget_period = models.CharField(
        max_length=20, choices=BudgetPeriod.choices, blank=True, default=""
    )
    allowed_ips = models.JSONField(
        null=True,
        blank=True,
        help_text="Networks (CIDR) the key may be used from; empty means anywhere.",
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Set by rotation.",
    )

    class Meta:
        db_table = "api_keys"
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["org", "status"], name="api_keys_org_status_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=~models.Q(external_id=""),
                name="api_keys_provider_external_uniq",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last_four}"
