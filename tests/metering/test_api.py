"""Usage, request-log, ledger and billing-period endpoints; the web app's usage summary."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from metering.adjustments import ledger_post_manual
from metering.ledger import ledger_post_closed_hours
from metering.models import UsageEvent
from metering.rollups import usage_rollup_pending
from tests.factories.accounts import add_member
from tests.factories.metering import MONDAY, record
from tests.support.errors import assert_stable_error

LAG = timedelta(minutes=15)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def usage(alice_org, alice_key, alice_key2):
    """Three days of alice's requests, rolled up."""
    record(alice_org, key=alice_key, at=MONDAY + timedelta(hours=1), prompt=100, completion=10)
    record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(hours=1, minutes=30),
        prompt=200,
        completion=20,
    )
    record(
        alice_org,
        key=alice_key2,
        at=MONDAY + timedelta(hours=5),
        model="qwen-3-32b",
        prompt=50,
        completion=5,
    )
    record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(days=2, hours=3),
        prompt=1000,
        completion=100,
    )
    usage_rollup_pending(now=MONDAY + timedelta(days=3))


def get_usage(api, user, org, **params):
    return api.as_user(user).get(f"/api/v1/orgs/{org.pk}/usage", params)


def week(**extra):
    return {"start": iso(MONDAY), "end": iso(MONDAY + timedelta(days=7)), **extra}


# --- /usage ----------------------------------------------------------------------------------------


def test_usage_by_day_reads_day_buckets_lists_every_day_and_totals(api, alice, alice_org, usage):
    response = get_usage(api, alice, alice_org, **week())

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["group_by"], body["granularity"]) == ("day", "day")
    assert [r["bucket"] for r in body["results"]] == [
        iso(MONDAY + timedelta(days=d)) for d in range(7)
    ]
    assert [r["requests"] for r in body["results"]] == [3, 0, 1, 0, 0, 0, 0]
    assert body["totals"] == {
        "requests": 4,
        "prompt_tokens": 1350,
        "completion_tokens": 135,
        "total_tokens": 1485,
        "cost": 135 + 54,
        "cost_usd": "0.000189",
    }


def test_usage_by_hour(api, alice, alice_org, usage):
    six_hours = {"start": iso(MONDAY), "end": iso(MONDAY + timedelta(hours=6))}
    body = get_usage(api, alice, alice_org, group_by="hour", **six_hours).json()

    assert body["granularity"] == "hour"
    assert [r["requests"] for r in body["results"]] == [0, 2, 0, 0, 0, 1]
    assert body["results"][1]["bucket"] == iso(MONDAY + timedelta(hours=1))


def test_usage_by_model(api, alice, alice_org, usage):
    body = get_usage(api, alice, alice_org, **week(group_by="model")).json()

    assert [(r["model"], r["requests"]) for r in body["results"]] == [
        ("gemma-4-26b", 3),
        ("qwen-3-32b", 1),
    ]
    assert body["results"][0]["bucket"] is None


def test_usage_by_key_names_the_keys(api, alice, alice_org, alice_key, alice_key2, usage):
    body = get_usage(api, alice, alice_org, **week(group_by="key")).json()

    by_key = {r["key_id"]: (r["key_name"], r["requests"]) for r in body["results"]}
    assert by_key == {
        str(alice_key.pk): ("alice's key", 3),
        str(alice_key2.pk): ("alice's second key", 1),
    }


def test_every_grouping_of_a_range_has_the_same_totals_even_off_day_boundaries(
    api, alice, alice_org, usage
):
    params = {
        "start": iso(MONDAY + timedelta(hours=1, minutes=20)),
        "end": iso(MONDAY + timedelta(days=2, hours=4)),
    }
    bodies = {
        g: get_usage(api, alice, alice_org, group_by=g, **params).json()
        for g in ("day", "hour", "model", "key")
    }

    assert bodies["day"]["start"] == iso(MONDAY + timedelta(hours=1))  # floored to the hour
    assert bodies["day"]["granularity"] == "hour"
    assert {b["totals"]["requests"] for b in bodies.values()} == {4}
    assert sum(r["requests"] for r in bodies["day"]["results"]) == 4


def test_usage_defaults_to_the_last_seven_days_by_day(api, alice, alice_org):
    body = get_usage(api, alice, alice_org).json()

    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert body["group_by"] == "day"
    assert end - start == timedelta(days=7)
    assert end >= timezone.now()


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "last tuesday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"start": "2026-03-05", "end": "2026-03-05"}, "end"),
        ({"start": "2026-03-05", "end": "2026-03-01"}, "end"),
        ({"start": "2025-01-01", "end": "2026-03-01"}, "end"),
        ({"group_by": "week"}, "group_by"),
        ({"start": "2026-01-01", "end": "2026-03-01", "group_by": "hour"}, "group_by"),
        ({"start": "2999-01-01"}, "start"),
    ],
)
def test_bad_usage_parameters_are_a_400_naming_the_parameter(api, alice, alice_org, params, param):
    response = get_usage(api, alice, alice_org, **params)

    assert_stable_error(
        response,
        status=400,
        code="invalid_request_error",
        type_="invalid_request_error",
        param=param,
    )


def test_a_member_reads_the_orgs_usage(api, alice_org, bob, usage):
    add_member(alice_org, bob, "member")

    assert get_usage(api, bob, alice_org, **week()).json()["totals"]["requests"] == 4


ORG_PATHS = ["usage", "requests", "ledger", "billing-periods"]


@pytest.mark.parametrize("path", ORG_PATHS)
def test_another_orgs_metering_is_404(api, alice, bob_org, path):
    record(bob_org, at=MONDAY)

    response = api.as_user(alice).get(f"/api/v1/orgs/{bob_org.pk}/{path}", {"group_by": "nonsense"})

    assert_stable_error(response, status=404, code="not_found", param=None)


@pytest.mark.parametrize("path", ORG_PATHS)
def test_a_malformed_org_id_is_404(api, alice, path):
    assert_stable_error(
        api.as_user(alice).get(f"/api/v1/orgs/not-a-uuid/{path}"), status=404, code="not_found"
    )


@pytest.mark.parametrize(
    "path",
    [
        *(f"/api/v1/orgs/00000000-0000-0000-0000-000000000001/{p}" for p in ORG_PATHS),
        "/portal/usage-summary",
    ],
)
def test_metering_endpoints_need_a_token(api, db, path):
    assert_stable_error(api.get(path), status=401, code="not_authenticated")


# --- /requests -------------------------------------------------------------------------------------


def get_requests(api, user, org, **params):
    response = api.as_user(user).get(f"/api/v1/orgs/{org.pk}/requests", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_requests_are_listed_newest_first_without_internals(api, alice, alice_org, alice_key):
    first = record(alice_org, key=alice_key, at=MONDAY)
    second = record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(minutes=1),
        status=502,
        prompt=0,
        completion=0,
        error_code="upstream_error",
    )

    body = get_requests(api, alice, alice_org)

    assert [r["request_id"] for r in body["results"]] == [second, first]
    row = body["results"][0]
    assert set(row) == {
        "request_id",
        "created_at",
        "endpoint",
        "model",
        "key_id",
        "status_code",
        "error_code",
        "latency_ms",
        "ttfb_ms",
        "streamed",
        "prompt_tokens",
        "completion_tokens",
    }
    assert (row["status_code"], row["error_code"], row["key_id"]) == (
        502,
        "upstream_error",
        str(alice_key.pk),
    )


def test_requests_filter_by_key_model_status_and_time(api, alice, alice_org, alice_key, alice_key2):
    a = record(alice_org, key=alice_key, at=MONDAY)
    b = record(alice_org, key=alice_key2, at=MONDAY + timedelta(minutes=1), model="qwen-3-32b")
    c = record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(minutes=2),
        status=429,
        prompt=0,
        completion=0,
    )
    d = record(
        alice_org,
        key=alice_key,
        at=MONDAY + timedelta(minutes=3),
        status=503,
        prompt=0,
        completion=0,
    )

    def ids(**params):
        return [r["request_id"] for r in get_requests(api, alice, alice_org, **params)["results"]]

    assert ids(key_id=str(alice_key2.pk)) == [b]
    assert ids(model="qwen-3-32b") == [b]
    assert ids(status="429") == [c]
    assert ids(status="5xx") == [d]
    assert ids(status="2xx") == [b, a]
    assert ids(
        start=iso(MONDAY + timedelta(minutes=1)), end=iso(MONDAY + timedelta(minutes=3))
    ) == [c, b]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"key_id": "nope"}, "key_id"),
        ({"status": "200x"}, "status"),
        ({"status": "9xx"}, "status"),
        ({"start": "2026-03-02T01:00Z", "end": "2026-03-02T00:00Z"}, "end"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
def test_bad_request_filters_are_a_400(api, alice, alice_org, params, param):
    response = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/requests", params)

    assert_stable_error(response, status=400, code="invalid_request_error", param=param)


def test_cursor_pages_neither_repeat_nor_skip_while_new_requests_arrive(api, alice, alice_org):
    made = [
        record(alice_org, at=MONDAY + timedelta(seconds=s // 2)) for s in range(7)
    ]  # ties in time too
    client = api.as_user(alice)

    seen, url, pages = [], f"/api/v1/orgs/{alice_org.pk}/requests?limit=3", 0
    while url:
        body = client.get(url).json()
        seen += [r["request_id"] for r in body["results"]]
        url = body["next"]
        pages += 1
        record(alice_org, at=MONDAY + timedelta(hours=1))  # newer than everything paged so far

    assert pages == 3
    assert seen == list(reversed(made))
    assert "cursor" in parse_qs(
        urlparse(get_requests(api, alice, alice_org, limit=1)["next"]).query
    )


# --- /ledger and /billing-periods --------------------------------------------------------------------


def test_ledger_lists_entries_with_integer_amounts(api, alice, alice_org):
    record(alice_org, at=MONDAY, prompt=1000)
    usage_rollup_pending(now=MONDAY + timedelta(hours=2))
    ledger_post_closed_hours(now=MONDAY + timedelta(hours=2), lag=LAG)
    ledger_post_manual(
        org=alice_org,
        kind="credit",
        amount=-1_500_000,
        idempotency_key="c",
        memo="sorry",
        actor=None,
        now=MONDAY + timedelta(hours=2),
    )

    body = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/ledger").json()

    assert body["count"] == 2
    credit, usage_entry = body["results"]
    assert (credit["kind"], credit["amount"], credit["amount_usd"]) == (
        "credit",
        -1_500_000,
        "-1.500000",
    )
    assert (usage_entry["kind"], usage_entry["amount"], usage_entry["requests"]) == (
        "usage",
        102,
        1,
    )
    assert usage_entry["usage_hour"] == iso(MONDAY)
    period_id = usage_entry["billing_period_id"]
    filtered = (
        api.as_user(alice)
        .get(f"/api/v1/orgs/{alice_org.pk}/ledger", {"period_id": period_id})
        .json()
    )
    assert filtered["count"] == 2
    assert (
        api.as_user(alice)
        .get(f"/api/v1/orgs/{alice_org.pk}/ledger", {"period_id": 999999})
        .json()["count"]
        == 0
    )


def test_billing_periods_show_running_totals_while_open(api, alice, alice_org):
    record(alice_org, at=MONDAY, prompt=1000)
    usage_rollup_pending(now=MONDAY + timedelta(hours=2))
    ledger_post_closed_hours(now=MONDAY + timedelta(hours=2), lag=LAG)

    body = api.as_user(alice).get(f"/api/v1/orgs/{alice_org.pk}/billing-periods").json()

    (period,) = body["results"]
    assert (period["status"], period["start"]) == ("open", iso(MONDAY))
    assert period["end"] == iso(MONDAY + timedelta(days=7))
    assert (period["requests"], period["cost"], period["cost_usd"], period["plan"]) == (
        1,
        102,
        "0.000102",
        "free",
    )


# --- /portal/usage-summary --------------------------------------------------------------------------


def test_usage_summary_for_the_web_app(api, alice, alice_org):
    sub = alice_org.subscriptions.get(status="active")
    now = timezone.now()
    sub.current_period_start, sub.current_period_end = (
        now - timedelta(days=1),
        now + timedelta(days=6),
    )
    sub.save()
    for minutes in (1, 2):
        record(alice_org, at=now - timedelta(minutes=minutes), prompt=100, completion=50)

    response = api.as_user(alice).get("/portal/usage-summary")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["org_id"] == str(alice_org.pk)
    assert body["plan"] == {"code": "free", "name": "Free"}
    assert body["used"] == {"requests": 2, "tokens": 300}
    assert body["limits"] == {"requests": 1000, "tokens": 500_000}
    assert body["remaining"] == {"requests": 998, "tokens": 499_700}
    assert datetime.fromisoformat(body["resets_at"]) == sub.current_period_end
    assert body["window"]["used"] == 2 and body["window"]["limit"] == 20
    assert datetime.fromisoformat(body["window"]["resets_at"]) == (
        UsageEvent.objects.order_by("created_at").first().created_at + timedelta(seconds=300)
    )
    assert (body["near_limit"], body["exhausted"]) == (False, False)


def test_usage_summary_flags_near_the_limit(api, alice, alice_org):
    now = timezone.now()
    for seconds in range(16):  # 16 of the short window's 20
        record(alice_org, at=now - timedelta(seconds=seconds + 1))

    body = api.as_user(alice).get("/portal/usage-summary").json()

    assert body["near_limit"] is True


def test_usage_summary_with_nothing_used_has_no_window_reset(api, alice):
    body = api.as_user(alice).get("/portal/usage-summary").json()

    assert body["used"] == {"requests": 0, "tokens": 0}
    assert body["window"]["resets_at"] is None
