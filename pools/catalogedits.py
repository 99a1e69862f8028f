"""Audit rows for plain admin edits of the catalog: a model's prices or limits, an alias, a
route, a router's address or weight, a pool's name. (The controls, disable a model or drain
a pool, are audited by the services ops provides.)

One row per object added, changed or deleted, with the fields that changed before and
after; an edit that changes nothing writes nothing. pools may not import accounts
(DESIGN's import rules), so the row is written by the `audit_record` accounts provides
(infra.adminactions). A router's sealed key never enters the log: a new key shows as
`"api_key": "replaced"`. `alias_target` is the lookup accounts' plan admin uses to refuse
a model access policy naming an alias.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models

from infra.adminactions import provided
from pools.models import Model, ModelAlias, Route, Router, RouterPool

# The audit log's names for catalog objects (ops' controls use the same ones).
TARGET_TYPES = {
    Model: "model",
    ModelAlias: "model_alias",
    Route: "route",
    Router: "router",
    RouterPool: "router_pool",
}
# Models and pools are named by name in the log (as their controls' rows are), others by id.
NAMED_BY_NAME = (Model, RouterPool)
LEFT_OUT = {"created_at", "updated_at", "api_key_sealed"}


def _plain(value: object) -> object:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def snapshot(obj: models.Model) -> dict:
    """The object's fields as the audit log records them: related objects by their name."""
    data = {}
    for field in obj._meta.concrete_fields:
        if field.name in LEFT_OUT:
            continue
        if field.is_relation:
            related_id = getattr(obj, field.attname)
            data[field.name] = None if related_id is None else str(getattr(obj, field.name))
        else:
            data[field.name] = _plain(getattr(obj, field.attname))
    return data


def stored_snapshots(objects) -> dict[int, dict]:
    """`id(obj) -> snapshot` of each saved object as the database holds it now (before an
    edit is saved: the admin has already put the form's values on the instances)."""
    objects = [obj for obj in objects if obj.pk is not None]
    if not objects:
        return {}
    stored = type(objects[0])._default_manager.in_bulk([obj.pk for obj in objects])
    return {id(obj): snapshot(stored[obj.pk]) for obj in objects if obj.pk in stored}


def record(
    *,
    obj: models.Model,
    before: dict | None,
    after: dict | None,
    actor: object,
    now: datetime,
    reason: str = "",
) -> None:
    """One audit row for `obj` added (no `before`), deleted (no `after`) or changed."""
    target_type = TARGET_TYPES.get(type(obj), obj._meta.model_name)
    whole = after if after is not None else before  # a deleted object's pk is gone: its id stays
    target_id = whole["name"] if isinstance(obj, NAMED_BY_NAME) else whole["id"]
    if before is not None and after is not None:
        changed = [name for name in after if before.get(name) != after[name]]
        if not changed:
            return
        before = {name: before.get(name) for name in changed}
        after = {name: after[name] for name in changed}
    kind = "create" if before is None else "delete" if after is None else "update"
    provided("audit_record")(
        actor=actor,
        action=f"{target_type}.{kind}",
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        before=before,
        after=after,
        now=now,
    )


def alias_target(name: str) -> str | None:
    """The canonical model `name` is an alias of, or None. Entitlements (model access
    policies) name canonical models: the gateway checks the name an alias resolves to."""
    return ModelAlias.objects.filter(alias=name).values_list("model__name", flat=True).first()
