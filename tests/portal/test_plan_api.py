"""What the dashboard shows about a plan: its limits, the period's allowance, and model entitlements."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import ModelAccessPolicy
from accounts.services import period_containing
from pools.models import Model, ModelAlias
from tests.factories.accounts import add_member, make_plan, subscribe, subscription
from tests.factories.apikeys import issue_key
from tests.factories.metering import record_usage


@pytest.fixture
def period(alice_org):
    """alice's current period, pinned to [a day ago, six days ahead)."""
    now = timezone.now()
    sub = subscription(alice_org)
    sub.current_period_start = now - timedelta(days=1)
    sub.current_period_end = now + timedelta(days=6)
    sub.save(update_fields=["current_period_start", "current_period_end"])
    return sub.current_period_start, sub.current_period_end


def get_plan(api, user, org) -> dict:
    response = api.as_user(user).get(f"/api/v1/orgs/{org.pk}/plan")
    assert response.status_code == 200, response.content
    return response.json()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- limits and allowance ---------------------------------------------------------


def test_plan_shows_the_plan_rows_limits(api, alice, alice_org):
    plan = subscription(alice_org).plan

    body = get_plan(api, alice, alice_org)

    assert body["plan"]["code"] == plan.code
    assert body["plan"]["max_active_keys"] == plan.max_active_keys
    assert body["plan"]["requests_per_minute"] == plan.requests_per_minute
    assert body["allowance"]["requests"]["limit"] == plan.weekly_requests
    assert body["allowance"]["tokens"]["limit"] == plan.weekly_tokens
    assert body["window"]["seconds"] == plan.window_seconds


def test_plan_follows_an_edit_to_the_plan_row(api, alice, alice_org):
    plan = subscription(alice_org).plan
    plan.weekly_tokens = 123_456
    plan.save()

    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["tokens"]["limit"] == 123_456


def test_a_new_org_has_used_nothing(api, alice, alice_org, period):
    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["requests"]["used"] == 0
    assert body["allowance"]["tokens"]["used"] == 0
    assert body["allowance"]["tokens"]["remaining"] == body["allowance"]["tokens"]["limit"]
    assert body["near_limit"] is False
    assert body["exhausted"] is False


def test_used_and_remaining_count_the_periods_usage(api, alice, alice_org, period):
    start, _ = period
    key = issue_key(alice_org, by=alice).key
    record_usage(alice_org, at=start + timedelta(minutes=5), prompt=100, completion=50, key=key)
    record_usage(alice_org, at=start + timedelta(hours=3), prompt=200, completion=25, key=key)
    record_usage(alice_org, at=start + timedelta(hours=20), prompt=1_000)
    plan = subscription(alice_org).plan

    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["requests"] == {
        "limit": plan.weekly_requests,
        "used": 3,
        "remaining": plan.weekly_requests - 3,
    }
    assert body["allowance"]["tokens"] == {
        "limit": plan.weekly_tokens,
        "used": 1_375,
        "remaining": plan.weekly_tokens - 1_375,
    }


def test_usage_outside_the_period_is_not_counted(api, alice, alice_org, period):
    start, end = period
    record_usage(alice_org, at=start, prompt=7)  # the period is [start, end): start counts
    record_usage(alice_org, at=start - timedelta(microseconds=1), prompt=1_000)
    record_usage(alice_org, at=start - timedelta(days=30), prompt=1_000)
    record_usage(alice_org, at=end, prompt=1_000)

    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["requests"]["used"] == 1
    assert body["allowance"]["tokens"]["used"] == 7


def test_another_orgs_usage_is_not_counted(api, alice, alice_org, bob_org, period):
    start, _ = period
    record_usage(bob_org, at=start + timedelta(hours=1), prompt=5_000)

    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["tokens"]["used"] == 0


def test_resets_at_is_the_period_end(api, alice, alice_org, period):
    start, end = period

    body = get_plan(api, alice, alice_org)

    assert parse(body["resets_at"]) == end
    assert (parse(body["period"]["start"]), parse(body["period"]["end"])) == (start, end)


def test_a_lapsed_period_shows_the_current_week(api, alice, alice_org):
    sub = subscription(alice_org)
    sub.current_period_start = timezone.now() - timedelta(days=21)
    sub.current_period_end = timezone.now() - timedelta(days=14)
    sub.save(update_fields=["current_period_start", "current_period_end"])
    start, end = period_containing(now=timezone.now())
    record_usage(alice_org, at=start, prompt=11)
    record_usage(alice_org, at=sub.current_period_start + timedelta(hours=1), prompt=1_000)

    body = get_plan(api, alice, alice_org)

    assert parse(body["resets_at"]) == end
    assert body["allowance"]["tokens"]["used"] == 11


# --- near_limit and exhausted ---------------------------------------------------------


@pytest.fixture
def tiny(alice_org, period):
    """alice on a plan with small weekly numbers: 10 requests, 1,000 tokens."""
    return subscribe(alice_org, make_plan("tiny", weekly_requests=10, weekly_tokens=1_000)).plan


@pytest.mark.parametrize(("tokens", "near"), [(0, False), (799, False), (800, True), (950, True)])
def test_near_limit_flips_at_80_percent_of_tokens(
    api, alice, alice_org, period, tiny, tokens, near
):
    record_usage(alice_org, at=period[0] + timedelta(hours=1), prompt=tokens)

    body = get_plan(api, alice, alice_org)

    assert body["near_limit"] is near
    assert body["exhausted"] is False


@pytest.mark.parametrize(("requests", "near"), [(7, False), (8, True)])
def test_near_limit_flips_at_80_percent_of_requests(
    api, alice, alice_org, period, tiny, requests, near
):
    for i in range(requests):
        record_usage(alice_org, at=period[0] + timedelta(hours=1, minutes=i), prompt=1)

    body = get_plan(api, alice, alice_org)

    assert body["near_limit"] is near


def test_an_exhausted_allowance_shows_nothing_remaining(api, alice, alice_org, period, tiny):
    record_usage(alice_org, at=period[0] + timedelta(hours=1), prompt=900, completion=300)

    body = get_plan(api, alice, alice_org)

    assert body["allowance"]["tokens"]["used"] == 1_200
    assert body["allowance"]["tokens"]["remaining"] == 0
    assert body["exhausted"] is True
    assert body["near_limit"] is True


# --- the model catalog and entitlements ---------------------------------------------


@pytest.fixture
def catalog(db):
    gemma = Model.objects.create(
        name="gemma-4-26b",
        display_name="Gemma 4 26B",
        context_window=32_768,
        input_price_per_mtok=100_000,
        output_price_per_mtok=400_000,
    )
    ModelAlias.objects.create(alias="default", model=gemma)
    Model.objects.create(name="qwen-3-32b", display_name="Qwen 3 32B")
    Model.objects.create(
        name="llama-old", display_name="Llama (retired)", status=Model.Status.DISABLED
    )
    return Model.objects.all()


def entitlements(api, user, **params) -> dict[str, bool]:
    response = api.as_user(user).get("/api/v1/models", params)
    assert response.status_code == 200, response.content
    return {m["id"]: m["entitled"] for m in response.json()["data"]}


def test_catalog_lists_every_model_with_its_details(api, alice, catalog):
    response = api.as_user(alice).get("/api/v1/models")

    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gemma-4-26b", "llama-old", "qwen-3-32b"]
    gemma = body["data"][0]
    assert gemma["display_name"] == "Gemma 4 26B"
    assert gemma["aliases"] == ["default"]
    assert gemma["context_window"] == 32_768
    assert gemma["pricing"] == {
        "input_per_mtok_micro_usd": 100_000,
        "output_per_mtok_micro_usd": 400_000,
    }


def test_an_all_models_plan_is_entitled_to_every_enabled_model(api, alice, catalog):
    assert entitlements(api, alice) == {"gemma-4-26b": True, "qwen-3-32b": True, "llama-old": False}


def test_a_restricted_plan_is_entitled_only_to_its_policy_models(api, alice, alice_org, catalog):
    plan = make_plan("gemma-only", all_models=False)
    ModelAccessPolicy.objects.create(plan=plan, model_name="gemma-4-26b")
    ModelAccessPolicy.objects.create(plan=plan, model_name="llama-old")
    subscribe(alice_org, plan)

    assert entitlements(api, alice) == {
        "gemma-4-26b": True,
        "qwen-3-32b": False,
        "llama-old": False,
    }


def test_entitlements_follow_the_org_asked_for(api, alice, bob, catalog):
    """bob's team org is restricted; his personal org is not."""
    team = alice.personal_org
    add_member(team, bob, "member")
    plan = make_plan("qwen-only", all_models=False)
    ModelAccessPolicy.objects.create(plan=plan, model_name="qwen-3-32b")
    subscribe(team, plan)

    assert entitlements(api, bob, org_id=str(team.pk)) == {
        "gemma-4-26b": False,
        "qwen-3-32b": True,
        "llama-old": False,
    }
    assert entitlements(api, bob)["gemma-4-26b"] is True


def test_the_plan_endpoint_names_a_restricted_plans_models(api, alice, alice_org):
    plan = make_plan("gemma-only", all_models=False)
    ModelAccessPolicy.objects.create(plan=plan, model_name="gemma-4-26b")
    subscribe(alice_org, plan)

    body = get_plan(api, alice, alice_org)

    assert (body["plan"]["all_models"], body["plan"]["models"]) == (False, ["gemma-4-26b"])
