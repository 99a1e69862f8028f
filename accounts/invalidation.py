"""Generation tokens that make the gateway drop cached auth contexts.

The gateway's cached context for a key records its org's and plan's generation;
changing an org (pause, plan switch) or a plan (limits, entitlements) sets a new
random token after commit, so every process reloads on its next request.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from infra import fastkeys, faststate


def org_generation_key(org_id: object) -> str:
    return fastkeys.ORG_GENERATION(org_id=org_id)


def plan_generation_key(plan_id: object) -> str:
    return fastkeys.PLAN_GENERATION(plan_id=plan_id)


def read_generations(*, org_id: object, plan_id: object) -> tuple[str, str]:
    og, pg = faststate.get_client().mget(org_generation_key(org_id), plan_generation_key(plan_id))
    return (og or b"").decode(), (pg or b"").decode()


def org_changed_on_commit(org_id: object) -> None:
    name = org_generation_key(org_id)
    transaction.on_commit(lambda: faststate.get_client().set(name, uuid.uuid4().hex))


def plan_changed_on_commit(plan_id: object) -> None:
    name = plan_generation_key(plan_id)
    transaction.on_commit(lambda: faststate.get_client().set(name, uuid.uuid4().hex))
