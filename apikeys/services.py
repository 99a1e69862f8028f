"""API key lifecycle: create, rename/update, revoke, rotate, disable, enable."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounts.models import Organization, User
from accounts.selectors import active_subscription
from accounts.services import audit_record
from apikeys import authcache
from apikeys.controls import FIELDS as CONTROL_FIELDS
from apikeys.controls import control_values, controls_snapshot
from apikeys.models import ApiKey
from apikeys.providers import IssuedSecret, get_provider
from portal.errors import PortalError


@dataclass(frozen=True)
class IssuedKey:
    """A key just created or rotated; `plaintext` exists only here, once."""

    key: ApiKey
    plaintext: str


def _snapshot(key: ApiKey) -> dict:
    return {
        "name": key.name,
        "status": key.status,
        "prefix": key.prefix,
        "last_four": key.last_four,
        "allowed_models": key.allowed_models,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        **controls_snapshot(key),
    }


def active_key_count(*, org: Organization, now: datetime) -> int:
    return (
        ApiKey.objects.filter(org=org, status=ApiKey.Status.ACTIVE)
        .exclude(expires_at__lte=now)
        .count()
    )


def _check_cap(*, org: Organization, plan, now: datetime) -> None:
    if active_key_count(org=org, now=now) >= plan.max_active_keys:
        raise PortalError(
            "key_limit_reached",
            f"The {plan.name} plan allows {plan.max_active_keys} active keys; revoke one first.",
        )


def _issue_secret(
    *, org: Organization, name: str, expires_at: datetime | None, plan_code: str
) -> tuple[uuid.UUID, object, IssuedSecret]:
    """A new key id and its secret from the provider: for Unkey a remote call, so it is made
    before any row is locked, and undone by `_revoked_unless_committed` if no row follows."""
    key_id = uuid.uuid4()
    provider = get_provider()
    issued = provider.issue(
        key_id=str(key_id),
        org_id=str(org.pk),
        plan_code=plan_code,
        name=name,
        expires_at=expires_at,
    )
    return key_id, provider, issued


@contextmanager
def _revoked_unless_committed(provider, issued: IssuedSecret):
    """Compensation: when the transaction storing the provider's key fails, the provider's key
    is revoked, so none is left valid at the provider without a Portal row. (Called inside an
    outer transaction that later rolls back, the key is disabled by `sync_unkey_keys`.)"""
    try:
        yield
    except BaseException:
        if issued.external_id:
            provider.revoke(external_id=issued.external_id)  # logs, never raises
        raise


def _insert(
    *,
    key_id: uuid.UUID,
    provider,
    issued: IssuedSecret,
    org: Organization,
    created_by: User | None,
    name: str,
    allowed_models: list[str] | None,
    expires_at: datetime | None,
    now: datetime,
    controls: dict,
) -> ApiKey:
    return ApiKey.objects.create(
        **controls,
        id=key_id,
        org=org,
        created_by=created_by,
        name=name,
        provider=provider.name,
        external_id=issued.external_id,
        key_hash=issued.key_hash,
        prefix=issued.prefix,
        last_four=issued.last_four,
        allowed_models=allowed_models or None,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )


def api_key_create(
    *,
    org: Organization,
    created_by: User | None,
    name: str,
    now: datetime,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    limits: dict | None = None,
    budget: dict | None = None,
    allowed_ips: list[str] | None = None,
) -> IssuedKey:
    """Issue a key for `org`, within the plan's active-key cap. The plaintext is returned once.

    The provider is asked first, holding no lock (Unkey answers over HTTP); then one
    transaction locks the org, checks the cap again and stores the row. If that fails, the
    provider's key is revoked: no orphan keys."""
    if expires_at is not None and expires_at <= now:
        raise PortalError(
            "invalid_request_error", "expires_at must be in the future.", param="expires_at"
        )
    plan = active_subscription(org=org).plan
    _check_cap(org=org, plan=plan, now=now)  # refuse early, without a call to the provider
    controls = control_values(
        org=org, given={"limits": limits, "budget": budget, "allowed_ips": allowed_ips}
    )
    key_id, provider, issued = _issue_secret(
        org=org, name=name, expires_at=expires_at, plan_code=plan.code
    )
    with _revoked_unless_committed(provider, issued), transaction.atomic():
        # Lock the org row so concurrent creates cannot both slip under the cap.
        Organization.objects.select_for_update().filter(pk=org.pk).first()
        _check_cap(org=org, plan=active_subscription(org=org).plan, now=now)
        key = _insert(
            key_id=key_id,
            provider=provider,
            issued=issued,
            org=org,
            created_by=created_by,
            name=name,
            allowed_models=allowed_models,
            expires_at=expires_at,
            now=now,
            controls=controls,
        )
        audit_record(
            actor=created_by,
            action="api_key.create",
            target_type="api_key",
            target_id=key.pk,
            org=org,
            after=_snapshot(key),
            now=now,
        )
    return IssuedKey(key=key, plaintext=issued.plaintext)


@transaction.atomic
def api_key_update(
    *,
    key: ApiKey,
    actor: object,
    now: datetime,
    name: str | None = None,
    allowed_models: list[str] | None = None,
    clear_allowed_models: bool = False,
    controls: dict | None = None,
) -> ApiKey:
    """Rename a key, or change its model restriction or its controls (`controls`: any of
    `limits`, `budget`, `allowed_ips`, as apikeys.controls.control_values reads them).
    A change admission reads takes effect on the key's next request in every process."""
    values = control_values(org=key.org, given=controls or {})
    before = _snapshot(key)
    if name is not None:
        key.name = name
    if clear_allowed_models:
        key.allowed_models = None
    elif allowed_models is not None:
        key.allowed_models = allowed_models or None
    for field, value in values.items():
        setattr(key, field, value)
    key.updated_at = now
    key.save(update_fields=["name", "allowed_models", *values, "updated_at"])
    after = _snapshot(key)
    if {**before, "name": ""} != {**after, "name": ""}:  # admission reads the rest
        authcache.invalidate_on_commit(key.pk)
    audit_record(
        actor=actor,
        action="api_key.update",
        target_type="api_key",
        target_id=key.pk,
        org=key.org,
        before=before,
        after=after,
        now=now,
    )
    return key


def _set_status(
    *, key: ApiKey, status: str, actor: object, reason: str, action: str, now: datetime
) -> ApiKey:
    locked = ApiKey.objects.select_for_update().get(pk=key.pk)
    if locked.status == status or locked.status == ApiKey.Status.REVOKED:
        return locked  # idempotent; a revoked key never comes back
    before = _snapshot(locked)
    locked.status = status
    locked.updated_at = now
    fields = ["status", "updated_at"]
    if status == ApiKey.Status.REVOKED:
        locked.revoked_at = now
        fields.append("revoked_at")
    locked.save(update_fields=fields)
    authcache.invalidate_on_commit(locked.pk)  # the Portal refuses it first, on the next request
    if locked.external_id:
        _tell_provider_on_commit(key=locked, status=status)
    audit_record(
        actor=actor,
        action=action,
        target_type="api_key",
        target_id=locked.pk,
        org=locked.org,
        reason=reason,
        before=before,
        after=_snapshot(locked),
        now=now,
    )
    return locked


def _tell_provider_on_commit(*, key: ApiKey, status: str) -> None:
    """The issuing provider hears of the change once it is committed (a remote call never
    holds the row lock, and a rolled-back change is never told)."""
    provider, external_id = get_provider(key.provider), key.external_id
    if status == ApiKey.Status.REVOKED:
        transaction.on_commit(lambda: provider.revoke(external_id=external_id), robust=True)
    else:
        enabled = status == ApiKey.Status.ACTIVE
        transaction.on_commit(
            lambda: provider.set_enabled(external_id=external_id, enabled=enabled), robust=True
        )


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: object, now: datetime, reason: str = "") -> ApiKey:
    """Revoke at once and for good; revoking twice is a no-op."""
    return _set_status(
        key=key,
        status=ApiKey.Status.REVOKED,
        actor=actor,
        reason=reason,
        action="api_key.revoke",
        now=now,
    )


@transaction.atomic
def api_key_disable(*, key: ApiKey, actor: object, now: datetime, reason: str = "") -> ApiKey:
    return _set_status(
        key=key,
        status=ApiKey.Status.DISABLED,
        actor=actor,
        reason=reason,
        action="api_key.disable",
        now=now,
    )


@transaction.atomic
def api_key_enable(*, key: ApiKey, actor: object, now: datetime, reason: str = "") -> ApiKey:
    return _set_status(
        key=key,
        status=ApiKey.Status.ACTIVE,
        actor=actor,
        reason=reason,
        action="api_key.enable",
        now=now,
    )


def _check_rotatable(key: ApiKey, now: datetime) -> None:
    if key.status != ApiKey.Status.ACTIVE:
        raise PortalError(
            "invalid_request_error", "Only an active key can be rotated.", param="key_id"
        )
    if key.expires_at is not None and key.expires_at <= now:
        # The new key keeps this expiry: it would be born expired.
        raise PortalError(
            "invalid_request_error", "An expired key cannot be rotated.", param="key_id"
        )


def api_key_rotate(*, key: ApiKey, actor: User | None, now: datetime) -> IssuedKey:
    """A new secret with the same settings; the old key is revoked in the same transaction.

    As for create: the provider is asked before the old key's row is locked, and its new
    key is revoked if the transaction fails."""
    current = ApiKey.objects.select_related("org").get(pk=key.pk)
    _check_rotatable(current, now)
    plan = active_subscription(org=current.org).plan
    key_id, provider, issued = _issue_secret(
        org=current.org, name=current.name, expires_at=current.expires_at, plan_code=plan.code
    )
    with _revoked_unless_committed(provider, issued), transaction.atomic():
        locked = ApiKey.objects.select_for_update().select_related("org").get(pk=key.pk)
        _check_rotatable(locked, now)
        new = _insert(
            key_id=key_id,
            provider=provider,
            issued=issued,
            org=locked.org,
            created_by=actor,
            name=locked.name,
            allowed_models=locked.allowed_models,
            expires_at=locked.expires_at,
            now=now,
            controls={field: getattr(locked, field) for field in CONTROL_FIELDS},
        )
        _set_status(
            key=locked,
            status=ApiKey.Status.REVOKED,
            actor=actor,
            reason="rotated",
            action="api_key.revoke",
            now=now,
        )
        ApiKey.objects.filter(pk=locked.pk).update(replaced_by=new)
        audit_record(
            actor=actor,
            action="api_key.create",
            target_type="api_key",
            target_id=new.pk,
            org=locked.org,
            reason=f"rotation of {locked.pk}",
            after=_snapshot(new),
            now=now,
        )
    return IssuedKey(key=new, plaintext=issued.plaintext)


def api_key_deleted(*, key: ApiKey, now: datetime) -> None:
    """A key row was deleted (with its org, or by code; the admin offers revoke instead):
    refuse it from the next request on every process, revoke it at its provider, and audit
    it, all once the deletion commits. Called by apikeys.apps' post_delete receiver."""
    authcache.invalidate_on_commit(key.pk)
    if key.external_id:
        provider, external_id = get_provider(key.provider), key.external_id
        transaction.on_commit(lambda: provider.revoke(external_id=external_id), robust=True)
    audit_record(
        actor=None,
        action="api_key.delete",
        target_type="api_key",
        target_id=key.pk,
        # The org may be going in the same transaction: named in `before`, not linked.
        before={**_snapshot(key), "org": str(key.org_id)},
        now=now,
    )


def api_keys_of_creator_changed(*, user_id: object) -> None:
    """The creator's status changed (accounts.privileges): their keys' cached contexts are
    dropped after commit, so the next request applies it."""
    ids = list(ApiKey.objects.filter(created_by_id=user_id).values_list("pk", flat=True))
    authcache.invalidate_on_commit(*ids)


def api_keys_touch_last_used(*, seen: dict[object, datetime]) -> int:
    """Record when keys were last used (key id -> time); only ever moves `last_used_at` forward.

    A display field, not part of the auth context: nothing to invalidate.
    """
    touched = 0
    for key_id, at in sorted(seen.items(), key=lambda item: str(item[0])):
        touched += (
            ApiKey.objects.filter(pk=key_id)
            .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=at))
            .update(last_used_at=at)
        )
    return touched
