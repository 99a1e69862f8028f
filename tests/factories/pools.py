"""Models, pools, routers and routes for tests, made through the pools services."""

from __future__ import annotations

from dataclasses import dataclass

from pools import services as pool_services
from pools.models import Model, Router, RouterPool

ROUTER_KEY = "rk-e2e-secret-router-key"
MODEL = "e2e-model"
ALIAS = "e2e-alias"
PRICES = (150_000, 600_000)  # micro-USD per million input / output tokens


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
