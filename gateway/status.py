"""What `GET /health` tells anyone who asks: whether access is paused, each pool's status and
the public names it serves, and which names no pool can serve now. No router internals."""

from __future__ import annotations

import logging

import redis

from infra import fastkeys, faststate
from pools.catalog import Catalog, get_catalog
from portal.errors import CATALOG

logger = logging.getLogger(__name__)


def access_pause_message() -> str | None:
    """The customer-facing message while access is paused, else None.

    Reads the flag the admission script checks first (`ops.services.pause_key()`), so the
    answer is what the next /v1 request gets. Unknown while fast state is down: not paused.
    """
    try:
        raw = faststate.get_client().get(fastkeys.PAUSE())
    except redis.RedisError:
        logger.warning(
            "fast state unavailable: /health cannot tell whether access is paused", exc_info=True
        )
        return None
    if raw is None:
        return None
    return raw.decode() or CATALOG["access_paused"].message


def unavailable_names(catalog: Catalog) -> list[str]:
    """Public names of enabled models that no active pool with an enabled router serves."""
    return [name for name in catalog.public_names() if not catalog.resolve(name).serving_routes()]


def service_status() -> dict:
    catalog = get_catalog()
    pools: dict[str, dict] = {}
    for name in catalog.public_names():
        for route in catalog.resolve(name).routes:
            pool = pools.setdefault(route.pool_name, {"status": route.pool_status, "models": []})
            if name not in pool["models"]:
                pool["models"].append(name)
    message = access_pause_message()
    return {
        "status": "ok" if message is None else "paused",
        "message": message,
        "pools": pools,
        "unavailable_models": unavailable_names(catalog),
    }
