"""Bench catalog and plan, after `manage.py seed_demo`: one model per upstream and a plan
whose limits every request is checked against but none reaches.

    python bench/seed.py ORG_ID NAME=URL [NAME=URL ...]     (the bench environment set)

Prints one JSON line: {"models": {name: url}, "plan": "bench"}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, Plan
from accounts.services import org_change_plan
from pools import services as pool_services
from pools.catalog import catalog_bump_version
from pools.models import Model, Route, Router, RouterPool

# High enough that nothing is ever refused, low enough that every check runs.
BENCH_PLAN = {
    "name": "Benchmark",
    "requests_per_minute": 1_000_000_000,
    "tokens_per_minute": 2_000_000_000,
    "concurrent_requests": 100_000,
    "window_requests": 1_000_000_000,
    "window_seconds": 300,
    "weekly_requests": 2_000_000_000,
    "weekly_tokens": 1_000_000_000_000_000,
    "max_active_keys": 100,
    "all_models": True,
    "is_default": False,
}


def ensure_model(name: str, url: str) -> None:
    pool = RouterPool.objects.filter(name=name).first() or pool_services.pool_create(name=name)
    router = Router.objects.filter(pool=pool, name="router-1").first()
    if router is None:
        pool_services.router_create(pool=pool, name="router-1", base_url=url, api_key="")
    elif router.base_url != url:
        Router.objects.filter(pk=router.pk).update(base_url=url, enabled=True)
    model = Model.objects.filter(name=name).first() or pool_services.model_create(
        name=name, display_name=name, input_price_per_mtok=100_000, output_price_per_mtok=400_000
    )
    if not Route.objects.filter(model=model, pool=pool).exists():
        pool_services.route_create(model=model, pool=pool, session_id=11, template="chatml")


def main(org_id: str, pairs: list[str]) -> None:
    models = dict(pair.split("=", 1) for pair in pairs)
    with transaction.atomic():
        plan, _ = Plan.objects.update_or_create(code="bench", defaults=BENCH_PLAN)
        for name, url in models.items():
            ensure_model(name, url)
        org_change_plan(
            org=Organization.objects.get(pk=org_id),
            plan=plan,
            actor=None,
            now=timezone.now(),
            reason="bench",
        )
    catalog_bump_version()
    print(json.dumps({"models": models, "plan": plan.code}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
