"""The gateway's test world in one namespace, for tests that call the gateway (in process or
live): a catalog on router URLs, plans with loose limits, a tenant with a live key.

    from tests.factories import seeding

    seeding.catalog(router_urls=[url])     # tests/factories/pools.py
    tenant = seeding.tenant(on_plan=seeding.plan(requests_per_minute=3))

Nothing is defined here: each name is the per-app factory's own.
"""

from __future__ import annotations

from tests.factories.accounts import LOOSE_LIMITS, ensure_seed_plans, plan
from tests.factories.apikeys import Tenant, tenant
from tests.factories.pools import ALIAS, MODEL, PRICES, ROUTER_KEY, Catalog, catalog

__all__ = [
    "ALIAS",
    "LOOSE_LIMITS",
    "MODEL",
    "PRICES",
    "ROUTER_KEY",
    "Catalog",
    "Tenant",
    "catalog",
    "ensure_seed_plans",
    "plan",
    "tenant",
]
