"""CSV exports: /usage.csv sums to /usage, /requests.csv lists what /requests pages, both
streamed, org-scoped like the JSON endpoints, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from accounts.signing import mint_dev_token
from metering import exports
from metering.rollups import usage_rollup_pending
from tests.factories.accounts import add_member
from tests.factories.apikeys import issue_key
from tests.factories.metering import MONDAY, record
from tests.support.errors import assert_stable_error


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def read_csv(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


TOTALS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens")


@pytest.fixture
def usage(alice_org, alice_key, alice_key2):
    """Four days of alice's requests, two keys and two models, some off the hour, rolled up."""
    for day in range(4):
        for hour, key, model in ((1, alice_key, "gemma-4-26b"), (5, alice_key2, "qwen-3-32b")):
            record(
                alice_org,
                key=key,
                model=model,
                at=MONDAY + timedelta(days=day, hours=hour, minutes=20),
                prompt=100 * (day + 1),
                completion=7 + day,
            )
        record(alice_org, key=alice_key, at=MONDAY + timedelta(days=day, hours=5), prompt=333)
    usage_rollup_pending(now=MONDAY + timedelta(days=5))


def usage_csv(api, user, org, **params):
    return api.as_user(user).get(f"/api/v1/orgs/{org.pk}/usage.csv", params)


def json_usage(api, user, org, **params):
    response = api.as_user(user).get(f"/api/v1/orgs/{org.pk}/usage", params)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(
    "params",
    [
        {"start": iso(MONDAY), "end": iso(MONDAY + timedelta(days=7))},  # day buckets
        {
            "start": iso(MONDAY + timedelta(hours=3)),
            "end": iso(MONDAY + timedelta(days=2, hours=2)),
        },
        {
            "start": iso(MONDAY),
            "end": iso(MONDAY + timedelta(days=3)),
            "group_by": "hour",
        },
    ],
    ids=["whole-days", "off-day-boundaries", "hourly"],
)
def test_usage_csv_totals_equal_the_json_totals(api, alice, alice_org, usage, params):
    rows = read_csv(usage_csv(api, alice, alice_org, **params))
    totals = json_usage(api, alice, alice_org, **params)["totals"]

    assert rows, "the fixture's usage is in every range"
    buckets = [(r["bucket_start"], r["model"], r["key_id"]) for r in rows]
    assert len(buckets) == len(set(buckets)) and buckets == sorted(buckets)
    for name in TOTALS:
        assert sum(int(r[name]) for r in rows) == totals[name], name
    assert sum(int(r["cost_micro_usd"]) for r in rows) == totals["cost"]
    assert totals["requests"] > 0


def test_usage_csv_has_a_header_and_a_row_per_bucket_model_and_key(
    api, alice, alice_org, alice_key, alice_key2, usage
):
    response = usage_csv(
        api, alice, alice_org, start=iso(MONDAY), end=iso(MONDAY + timedelta(days=7))
    )
    rows = read_csv(response)

    assert list(rows[0]) == exports.USAGE_COLUMNS
    keys = [(r["bucket_start"], r["model"], r["key_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 2  # 4 days x (gemma by key 1, qwen by key 2)
    monday = [r for r in rows if r["bucket_start"] == iso(MONDAY)]
    gemma = next(r for r in monday if r["model"] == "gemma-4-26b")
    assert (gemma["bucket"], gemma["key_id"], gemma["key_name"]) == (
        "day",
        str(alice_key.pk),
        "alice's key",
    )
    assert (gemma["requests"], gemma["prompt_tokens"], gemma["completion_tokens"]) == (
        "2",
        str(100 + 333),
        str(7 + 5),
    )
    # integer micro-USD (100k/400k per Mtok, rounded up per request), and the same as decimal
    assert gemma["cost_micro_usd"] == str(13 + 36)
    assert gemma["cost_usd"] == "0.000049"
    assert 'filename="usage-' in response["Content-Disposition"]


def test_usage_csv_hour_buckets(api, alice, alice_org, usage):
    rows = read_csv(
        usage_csv(
            api,
            alice,
            alice_org,
            start=iso(MONDAY),
            end=iso(MONDAY + timedelta(hours=6)),
            group_by="hour",
        )
    )

    assert {(r["bucket_start"], r["bucket"], r["model"]) for r in rows} == {
        (iso(MONDAY + timedelta(hours=1)), "hour", "gemma-4-26b"),
        (iso(MONDAY + timedelta(hours=5)), "hour", "gemma-4-26b"),
        (iso(MONDAY + timedelta(hours=5)), "hour", "qwen-3-32b"),
    }


def test_usage_csv_has_only_a_header_when_nothing_was_used(api, alice, alice_org):
    response = usage_csv(api, alice, alice_org)

    text = b"".join(response.streaming_content).decode()
    assert text == ",".join(exports.USAGE_COLUMNS) + "\r\n"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "model"}, "group_by"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-03-05", "end": "2026-03-01"}, "end"),
        ({"start": "2025-01-01", "end": "2026-03-01"}, "end"),
    ],
)
def test_bad_usage_csv_parameters_are_a_json_400(api, alice, alice_org, params, param):
    response = api.as_user(alice).get(
        f"/api/v1/orgs/{alice_org.pk}/usage.csv", params, HTTP_ACCEPT="text/csv"
    )

    assert_stable_error(response, status=400, code="invalid_request_error", param=param)


# --- /requests.csv -------------------------------------------------------------------------------


def requests_csv(api, user, org, **params):
    return api.as_user(user).get(f"/api/v1/orgs/{org.pk}/requests.csv", params)


def all_pages(api, user, org, **params) -> list[dict]:
    client, results = api.as_user(user), []
    response = client.get(f"/api/v1/orgs/{org.pk}/requests", {**params, "limit": 2})
    while True:
        body = response.json()
        results += body["results"]
        if not body["next"]:
            return results
        response = client.get(body["next"])


def as_csv_cells(row: dict) -> dict:
    """A /requests JSON row as the CSV writes it."""
    cells = {}
    for name, value in row.items():
        if value is None:
            cells[name] = ""
        elif isinstance(value, bool):
            cells[name] = "true" if value else "false"
        else:
            cells[name] = str(value)
    return cells


@pytest.fixture
def logs(alice_org, alice_key, alice_key2):
    made = [
        record(alice_org, key=alice_key, at=MONDAY),
        record(alice_org, key=alice_key2, at=MONDAY + timedelta(minutes=1), model="qwen-3-32b"),
        record(
            alice_org,
            key=alice_key,
            at=MONDAY + timedelta(minutes=2),
            status=429,
            prompt=0,
            completion=0,
            error_code="rate_limit_exceeded",
        ),
        record(alice_org, at=MONDAY + timedelta(minutes=2), status=503, prompt=0, completion=0),
        record(alice_org, key=alice_key, at=MONDAY + timedelta(minutes=3, seconds=1)),
    ]
    return made


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"key": "alice_key2"},
        {"model": "qwen-3-32b"},
        {"status": "429"},
        {"status": "5xx"},
        {"status": "2xx"},
        {"start": iso(MONDAY + timedelta(minutes=1)), "end": iso(MONDAY + timedelta(minutes=3))},
    ],
)
def test_requests_csv_rows_are_the_rows_of_requests(
    api, alice, alice_org, alice_key2, logs, params
):
    if params.get("key"):
        params = {"key_id": str(alice_key2.pk)}
    rows = read_csv(requests_csv(api, alice, alice_org, **params))
    listed = all_pages(api, alice, alice_org, **params)

    assert rows == [as_csv_cells(r) for r in listed]
    assert rows, "every filter matches something in the fixture"


def test_requests_csv_columns_and_values(api, alice, alice_org, alice_key, logs):
    rows = read_csv(requests_csv(api, alice, alice_org, status="429"))

    (row,) = rows
    assert list(row) == exports.REQUEST_COLUMNS
    assert (row["request_id"], row["status_code"], row["error_code"]) == (
        logs[2],
        "429",
        "rate_limit_exceeded",
    )
    assert (row["key_id"], row["created_at"], row["streamed"], row["ttfb_ms"]) == (
        str(alice_key.pk),
        iso(MONDAY + timedelta(minutes=2)),
        "false",
        "",
    )


def test_requests_csv_reads_in_chunks_and_keeps_ties_in_order(api, alice, alice_org, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK", 3)
    made = [record(alice_org, at=MONDAY + timedelta(seconds=s // 3)) for s in range(10)]

    rows = read_csv(requests_csv(api, alice, alice_org))

    assert [r["request_id"] for r in rows] == list(reversed(made))  # no repeat, no gap


def test_requests_csv_filters_are_validated_like_requests(api, alice, alice_org):
    response = requests_csv(api, alice, alice_org, status="200x")

    assert_stable_error(response, status=400, code="invalid_request_error", param="status")


# --- both: org scoping, auth, spreadsheet safety -------------------------------------------------------

CSV_PATHS = ["usage.csv", "requests.csv"]


@pytest.mark.parametrize("path", CSV_PATHS)
def test_another_orgs_export_is_404(api, alice, bob_org, path):
    record(bob_org, at=MONDAY)

    response = api.as_user(alice).get(f"/api/v1/orgs/{bob_org.pk}/{path}")

    assert_stable_error(response, status=404, code="not_found", param=None)


@pytest.mark.parametrize("path", CSV_PATHS)
def test_exports_need_a_token(api, db, path):
    response = api.get(f"/api/v1/orgs/00000000-0000-0000-0000-000000000001/{path}")

    assert_stable_error(response, status=401, code="not_authenticated")


@pytest.mark.parametrize("path", CSV_PATHS)
def test_a_member_exports_with_a_dev_signed_token(client, settings, alice_org, bob, path):
    settings.AUTH_PROVIDER = "dev"
    add_member(alice_org, bob, "member")
    record(alice_org, at=MONDAY)
    usage_rollup_pending(now=MONDAY + timedelta(hours=1))
    token = mint_dev_token(subject=f"user_{bob.email}", email=bob.email)

    response = client.get(
        f"/api/v1/orgs/{alice_org.pk}/{path}",
        {"start": iso(MONDAY), "end": iso(MONDAY + timedelta(days=1))},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert len(read_csv(response)) == 1


def test_formula_cells_are_neutralised(api, alice, alice_org):
    key = issue_key(alice_org, by=alice, name='=HYPERLINK("http://evil.example","x")').key
    record(alice_org, key=key, at=MONDAY, model="@SUM(A1)")
    record(alice_org, key=key, at=MONDAY, model="-2+3", error_code="+cmd")
    usage_rollup_pending(now=MONDAY + timedelta(hours=1))

    usage_rows = read_csv(
        usage_csv(api, alice, alice_org, start=iso(MONDAY), end=iso(MONDAY + timedelta(days=1)))
    )
    request_rows = read_csv(requests_csv(api, alice, alice_org))

    assert {r["key_name"] for r in usage_rows} == {'\'=HYPERLINK("http://evil.example","x")'}
    assert {r["model"] for r in usage_rows} == {"'@SUM(A1)", "'-2+3"}
    assert {(r["model"], r["error_code"]) for r in request_rows} == {
        ("'@SUM(A1)", ""),
        ("'-2+3", "'+cmd"),
    }


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        (-5, -5),
        ("", ""),
    ],
)
def test_safe_cell(value, cell):
    assert exports.safe_cell(value) == cell
