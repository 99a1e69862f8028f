"""Staff controls that need more than one app: audited catalog controls and the global pause.

pools stays free of accounts (DESIGN.md: pools uses only portal), so the audit of its
control changes lives here: each control is one transaction that calls the pools
service and writes the audit row. The pools service bumps the catalog version after
commit, so every gateway process serves the change from its next request. Key and org
controls live in their own apps (`apikeys.services`, `accounts.services`).
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from django.db import transaction

from accounts.services import audit_record
from infra import fastkeys, faststate
from ops.models import AccessPause
from pools import health
from pools import services as pool_services
from pools.models import Model, Router, RouterPool

logger = logging.getLogger(__name__)


# --- models, pools, routers ---------------------------------------------------------------


def _audited_status(
    *,
    locked,
    status: str,
    set_status,
    target_type: str,
    action: str,
    actor: object,
    reason: str,
    now: datetime,
):
    """Move a locked model or pool to `status` through its pools service, with an audit row."""
    if locked.status == status:
        return locked
    before = {"status": locked.status}
    set_status(status)
    audit_record(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=locked.name,
        reason=reason,
        before=before,
        after={"status": status},
        now=now,
    )
    return locked


def _model_set(*, model: Model, status: str, action: str, **audit) -> Model:
    locked = Model.objects.select_for_update().get(pk=model.pk)
    return _audited_status(
        locked=locked,
        status=status,
        set_status=lambda value: pool_services.model_set_status(model=locked, status=value),
        target_type="model",
        action=action,
        **audit,
    )


def _pool_set(*, pool: RouterPool, status: str, action: str, **audit) -> RouterPool:
    locked = RouterPool.objects.select_for_update().get(pk=pool.pk)
    return _audited_status(
        locked=locked,
        status=status,
        set_status=lambda value: pool_services.pool_set_status(pool=locked, status=value),
        target_type="router_pool",
        action=action,
        **audit,
    )


@transaction.atomic
def model_disable(*, model: Model, actor: object, reason: str, now: datetime) -> Model:
    """The model answers 403 `model_disabled` from the next request on."""
    return _model_set(
        model=model,
        status=Model.Status.DISABLED,
        action="model.disable",
        actor=actor,
        reason=reason,
        now=now,
    )


@transaction.atomic
def model_enable(*, model: Model, actor: object, reason: str, now: datetime) -> Model:
    return _model_set(
        model=model,
        status=Model.Status.ENABLED,
        action="model.enable",
        actor=actor,
        reason=reason,
        now=now,
    )


@transaction.atomic
def pool_drain(*, pool: RouterPool, actor: object, reason: str, now: datetime) -> RouterPool:
    """No new requests go to the pool; requests already on its routers finish."""
    return _pool_set(
        pool=pool,
        status=RouterPool.Status.DRAINING,
        action="pool.drain",
        actor=actor,
        reason=reason,
        now=now,
    )


@transaction.atomic
def pool_activate(*, pool: RouterPool, actor: object, reason: str, now: datetime) -> RouterPool:
    """Undrain (or re-enable) a pool: it takes new requests again."""
    return _pool_set(
        pool=pool,
        status=RouterPool.Status.ACTIVE,
        action="pool.activate",
        actor=actor,
        reason=reason,
        now=now,
    )


@transaction.atomic
def pool_disable(*, pool: RouterPool, actor: object, reason: str, now: datetime) -> RouterPool:
    """Like drain, for a pool that is not coming back soon."""
    return _pool_set(
        pool=pool,
        status=RouterPool.Status.DISABLED,
        action="pool.disable",
        actor=actor,
        reason=reason,
        now=now,
    )


def _router_set(
    *, router: Router, enabled: bool, actor: object, reason: str, now: datetime
) -> Router:
    locked = Router.objects.select_for_update().select_related("pool").get(pk=router.pk)
    if locked.enabled == enabled:
        return locked
    pool_services.router_set_enabled(router=locked, enabled=enabled)
    audit_record(
        actor=actor,
        action="router.enable" if enabled else "router.disable",
        target_type="router",
        target_id=locked.pk,
        reason=reason,
        before={"enabled": not enabled, "router": str(locked)},
        after={"enabled": enabled, "router": str(locked)},
        now=now,
    )
    return locked


@transaction.atomic
def router_disable(*, router: Router, actor: object, reason: str, now: datetime) -> Router:
    """The router gets no new requests; requests already on it finish."""
    return _router_set(router=router, enabled=False, actor=actor, reason=reason, now=now)


@transaction.atomic
def router_enable(*, router: Router, actor: object, reason: str, now: datetime) -> Router:
    return _router_set(router=router, enabled=True, actor=actor, reason=reason, now=now)


@transaction.atomic
def router_reset_breaker(*, router: Router, actor: object, reason: str, now: datetime) -> Router:
    """Close the router's circuit breaker now (staff know it is back before a probe does)."""
    live = health.routers_live([router.pk], now_ms=int(now.timestamp() * 1000)).get(router.pk)
    health.router_breaker_reset(router=router)
    audit_record(
        actor=actor,
        action="router.reset_breaker",
        target_type="router",
        target_id=router.pk,
        reason=reason,
        before={"breaker": live.breaker if live else "unknown"},
        after={"breaker": "closed"},
        now=now,
    )
    return router


# --- the global access pause ---------------------------------------------------------------


def pause_key() -> str:
    """The fast-state key the admission script checks first (`gateway/lua/admit.lua`)."""
    return fastkeys.PAUSE()


def access_pause_get() -> AccessPause:
    return AccessPause.objects.filter(pk=AccessPause.SINGLETON_ID).first() or AccessPause()


def _write_fast_state(*, active: bool, message: str) -> None:
    try:
        client = faststate.get_client()
        if active:
            client.set(pause_key(), message)
        else:
            client.delete(pause_key())
    except redis.RedisError:
        # Committed in Postgres; the ops.sync_access_pause beat task writes it once fast state is back.
        logger.exception("could not write the global pause to fast state")


def _access_set(
    *, active: bool, message: str, actor: object, reason: str, now: datetime, action: str
) -> AccessPause:
    pause, _ = AccessPause.objects.select_for_update().get_or_create(pk=AccessPause.SINGLETON_ID)
    before = {"active": pause.active, "message": pause.message}
    pause.active = active
    pause.message = message
    pause.changed_at = now
    pause.changed_by = audit_record(
        actor=actor,
        action=action,
        target_type="access_pause",
        target_id="global",
        reason=reason,
        before=before,
        after={"active": active, "message": message},
        now=now,
    ).actor_label
    pause.save()
    transaction.on_commit(lambda: _write_fast_state(active=active, message=message))
    return pause


@transaction.atomic
def access_pause(*, message: str, actor: object, reason: str, now: datetime) -> AccessPause:
    """Every /v1 request gets 503 `access_paused` with `message`, from the next request on."""
    return _access_set(
        active=True,
        message=message.strip(),
        actor=actor,
        reason=reason,
        now=now,
        action="access.pause",
    )


@transaction.atomic
def access_resume(*, actor: object, reason: str, now: datetime) -> AccessPause:
    return _access_set(
        active=False, message="", actor=actor, reason=reason, now=now, action="access.resume"
    )


def access_pause_sync() -> bool:
    """Make fast state agree with Postgres (fast state may have lost the key). Returns `active`."""
    pause = access_pause_get()
    _write_fast_state(active=pause.active, message=pause.message)
    return pause.active
