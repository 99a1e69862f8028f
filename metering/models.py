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
