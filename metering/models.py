"""Durable usage: one event per request that served tokens, priced in integer micro-units."""

from django.db import models

from accounts.models import Organization
from apikeys.models import ApiKey


class UsageEvent(models.Model):
    request_id = models.CharField(max_length=40, unique=True)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=100)
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    estimated = models.BooleanField(default=False, help_text="Counted by the Portal; the router sent no usage.")
    cost = models.BigIntegerField(help_text="Micro-USD.")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "usage_events"
        indexes = [models.Index(fields=["org", "created_at"], name="usage_events_org_time_idx")]

    def __str__(self) -> str:
        return self.request_id

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RequestLog(models.Model):
    """One row per gateway request: who, what, where it went and how it ended. No prompt text."""

    request_id = models.CharField(max_length=40, unique=True)
    org = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
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
    created_at = models.DateTimeField()

    class Meta:
        db_table = "request_logs"
        indexes = [
            models.Index(fields=["org", "created_at"], name="request_logs_org_time_idx"),
            models.Index(fields=["created_at"], name="request_logs_time_idx"),
        ]

    def __str__(self) -> str:
        return self.request_id
