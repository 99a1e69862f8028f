"""Catalogs, plans and tenants for tests that drive the gateway, made through the services.

Shared by the live-process tests here and the in-process flow tests in tests/gateway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import Organization, Plan, User
from accounts.plan_defaults import ensure_default_plans
from accounts.services import Identity, org_change_plan, user_get_or_provision
from apikeys.models import ApiKey
from apikeys.services import api_key_create
from pools import services as pool_services
from pools.models import Model, Router, RouterPool

ROUTER_KEY = "rk-e2e-secret-router-key"
MODEL = "e2e-model"
ALIAS = "e2e-alias"
PRICES = (150_000, 600_000)  # micro-USD per million input / output tokens

# Generous limits: a test names only the limit it is about.
_LOOSE = {
    "requests_per_minute": 10_000,
    "tokens_per_minute": 100_000_000,
    "concurrent_requests": 500,
    "window_requests": 100_000,
    "window_seconds": 300,
    "weekly_requests": 1_000_000,
    "weekly_tokens": 1_000_000_000,
    "max_active_keys": 50,
}


def ensure_seed_plans() -> None:
    """Put back the migration-seeded plans when a transactional test's flush removed them."""
    ensure_default_plans(Plan)


@dataclass(frozen=True)
class Catalog:
    model: Model
    pool: RouterPool
    routers: list[Router]


def catalog(
    *,
    router_urls: list[str],
    router_key: str = ROUTER_KEY,
    model: str = MODEL,
    aliases: tuple[str, ...] = (ALIAS,),
    pool: str = "e2e-pool",
    prices: tuple[int, int] = PRICES,
    session_id: int = 7,
    template: str = "chatml",
    priority: int = 100,
    weights: tuple[int, ...] | None = None,
) -> Catalog:
    """One model served by one pool of routers (the model is reused if it exists)."""
    found = Model.objects.filter(name=model).first()
    model_row = found or pool_services.model_create(
        name=model,
        display_name=model.replace("-", " ").title(),
        input_price_per_mtok=prices[0],
        output_price_per_mtok=prices[1],
        aliases=aliases,
    )
    pool_row = pool_services.pool_create(name=pool)
    routers = [
        pool_services.router_create(
            pool=pool_row,
            name=f"router-{i + 1}",
            base_url=url,
            api_key=router_key,
            weight=weights[i] if weights else 1,
        )
        for i, url in enumerate(router_urls)
    ]
    pool_services.route_create(
        model=model_row, pool=pool_row, session_id=session_id, template=template, priority=priority
    )
    return Catalog(model=model_row, pool=pool_row, routers=routers)


def plan(code: str = "e2e", **limits) -> Plan:
    """A plan with loose limits except the ones given (`requests_per_minute=3`, ...)."""
    fields = {**_LOOSE, **limits}
    return Plan.objects.create(code=code, name=code.title(), all_models=True, **fields)


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
    issued = api_key_create(
        org=org, created_by=user, name="e2e", now=now, allowed_models=allowed_models
    )
    return Tenant(user=user, org=org, key=issued.key, secret=issued.plaintext)
