"""Keys for tests, issued through the service as the dashboard does, and tenants (a user,
their personal org and one live key) for tests that call the gateway."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import Organization, Plan, User
from accounts.services import Identity, org_change_plan, user_get_or_provision
from apikeys import services
from apikeys.models import ApiKey
from tests.factories.accounts import ensure_seed_plans, plan


def issue_key(
    org, *, by, name: str = "test key", now: datetime | None = None, **options
) -> services.IssuedKey:
    return services.api_key_create(
        org=org, created_by=by, name=name, now=now or timezone.now(), **options
    )


@dataclass(frozen=True)
class Tenant:
    user: User
    org: Organization
    key: ApiKey
    secret: str


def tenant(
    email: str = "e2e@example.com",
    *,
    on_plan: Plan | None = None,
    allowed_models: list[str] | None = None,
) -> Tenant:
    """A user with a personal org (on `on_plan`, else a loose plan) and one live key."""
    ensure_seed_plans()
    now = timezone.now()
    user = user_get_or_provision(
        identity=Identity(provider="dev", subject=f"dev|{email}", email=email, name="E2E"), now=now
    )
    org = user.personal_org
    org_change_plan(
        org=org,
        plan=on_plan or plan(f"loose-{uuid.uuid4().hex[:8]}"),
        actor=None,
        now=now,
        reason="test",
    )
    issued = services.api_key_create(
        org=org, created_by=user, name="e2e", now=now, allowed_models=allowed_models
    )
    return Tenant(user=user, org=org, key=issued.key, secret=issued.plaintext)
