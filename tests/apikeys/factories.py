"""Keys for tests, issued through the service as the dashboard does."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from apikeys import services


def issue_key(
    org, *, by, name: str = "test key", now: datetime | None = None, **options
) -> services.IssuedKey:
    return services.api_key_create(
        org=org, created_by=by, name=name, now=now or timezone.now(), **options
    )
