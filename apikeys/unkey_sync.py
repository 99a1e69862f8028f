"""Reconcile the Portal's Unkey keys with Unkey: the Portal's rows are the truth.

Drift comes from after-commit calls that failed (Unkey was down when a key was revoked),
plan changes (Unkey's ratelimits follow the plan only through here), and keys Unkey made
for a create whose transaction rolled back (orphans).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from accounts.selectors import active_subscriptions
from apikeys import unkey
from apikeys.models import ApiKey


@dataclass(frozen=True)
class Change:
    """One thing to do in Unkey; `kind` is update, delete, or missing (nothing can be done)."""

    kind: str
    unkey_key_id: str
    portal_key: ApiKey | None
    fields: dict = field(
        default_factory=dict
    )  # update: name -> (Unkey's value, the Portal's value)

    def describe(self) -> str:
        who = (
            f"{self.unkey_key_id} (Portal key {self.portal_key.pk} {self.portal_key.masked})"
            if self.portal_key
            else self.unkey_key_id
        )
        if self.kind == "update":
            parts = "; ".join(
                f"{name}: {old!r} -> {new!r}" for name, (old, new) in self.fields.items()
            )
            return f"update {who}: {parts}"
        if self.kind == "delete":
            return f"delete {who}: " + (
                "revoked in the Portal" if self.portal_key else "no Portal key has it"
            )
        return f"missing {who}: Unkey has no such key, so it cannot be verified; revoke it in the Portal"


def desired(key: ApiKey, plan) -> dict:
    """What Unkey should hold for `key`, in the field names `keys.updateKey` takes."""
    return {
        "name": key.name,
        "external_id": str(key.org_id),
        "enabled": key.status == ApiKey.Status.ACTIVE,
        "meta": unkey.key_meta(
            key_id=key.pk, org_id=key.org_id, plan_code=plan.code if plan else "", status=key.status
        ),
        "expires": unkey.expires_ms(key.expires_at),
        "ratelimits": unkey.plan_ratelimits(plan) if plan else None,
    }


def held(data) -> dict:
    """What Unkey holds (`KeyResponseData`), in the same terms as `desired`."""
    return {
        "name": data.name,
        "external_id": data.identity.external_id if data.identity else None,
        "enabled": data.enabled,
        "meta": data.meta,
        "expires": data.expires,
        "ratelimits": [
            {"name": r.name, "limit": r.limit, "duration": r.duration, "autoApply": r.auto_apply}
            for r in data.ratelimits or []
        ],
    }


def _same(name: str, want, have) -> bool:
    if name == "ratelimits":
        if want is None:
            return True  # no plan to take limits from: leave Unkey's
        return sorted(map(_limit, want)) == sorted(map(_limit, have or []))
    return want == have


def _limit(r: dict) -> tuple:
    return r["name"], r["limit"], r["duration"], bool(r.get("autoApply"))


# A key younger than this may belong to a create whose transaction has not committed yet.
ORPHAN_MIN_AGE_MS = 10 * 60_000


def plan_changes(*, now: datetime, delete_revoked: bool = False) -> list[Change]:
    """Every change that would bring Unkey in line with the Portal (reads both, writes neither)."""
    remote = {data.key_id: data for data in unkey.list_keys()}
    keys = list(
        ApiKey.objects.filter(provider=ApiKey.Provider.UNKEY)
        .exclude(external_id="")
        .select_related("org")
        .order_by("created_at", "id")
    )
    plans = {
        sub.org_id: sub.plan
        for sub in active_subscriptions()
        .select_related("plan")
        .filter(org_id__in={k.org_id for k in keys})
    }
    changes: list[Change] = []
    for key in keys:
        data = remote.pop(key.external_id, None)
        if data is None:
            if key.status != ApiKey.Status.REVOKED:
                changes.append(Change("missing", key.external_id, key))
            continue
        if key.status == ApiKey.Status.REVOKED and delete_revoked:
            changes.append(Change("delete", key.external_id, key))
            continue
        want, have = desired(key, plans.get(key.org_id)), held(data)
        differing = {
            name: (have[name], want[name])
            for name in want
            if not _same(name, want[name], have[name])
        }
        if differing:
            changes.append(Change("update", key.external_id, key, differing))
    # Keys the Portal created (they carry its key id) that no Portal row knows: orphans.
    cutoff_ms = int(now.timestamp() * 1000) - ORPHAN_MIN_AGE_MS
    for key_id, data in remote.items():
        if (data.meta or {}).get("portal_key_id") and data.created_at <= cutoff_ms:
            changes.append(Change("delete", key_id, None))
    return changes


def apply_change(change: Change) -> None:
    if change.kind == "update":
        unkey.update_key(
            change.unkey_key_id, **{name: new for name, (_, new) in change.fields.items()}
        )
    elif change.kind == "delete":
        unkey.delete_key(change.unkey_key_id)


@dataclass(frozen=True)
class Outcome:
    change: Change
    error: str = ""  # why applying it failed


def reconcile(*, now: datetime, apply: bool, delete_revoked: bool = False) -> list[Outcome]:
    """Find the drift and, with `apply`, fix what can be fixed (a failed change does not stop the rest)."""
    outcomes = []
    for change in plan_changes(now=now, delete_revoked=delete_revoked):
        error = ""
        if apply and change.kind != "missing":
            try:
                apply_change(change)
            except unkey.UnkeyCallFailed as exc:
                error = str(exc)
        outcomes.append(Outcome(change, error))
    return outcomes
