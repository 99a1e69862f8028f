"""Answers under /v1/messages carry Anthropic's headers: `request-id` (what the anthropic SDK
reads as `_request_id`) equal to x-request-id, and anthropic-ratelimit-{requests,tokens}-
{limit,remaining,reset} mirroring the x-ratelimit-* values, each reset an RFC 3339 time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from gateway.replies import _duration, _duration_ms, anthropic_headers
from tests.factories import seeding

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Which headers do I get?"}]
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def post(path: str, secret: str, body: dict):
    return Client().post(
        path, data=json.dumps(body), content_type="application/json", HTTP_X_API_KEY=secret
    )


def message(secret: str, **body):
    return post(
        "/v1/messages",
        secret,
        {"model": seeding.MODEL, "max_tokens": 8, "messages": MESSAGES, **body},
    )


def assert_mirrored(response, *, sent_after: datetime, kinds=("requests", "tokens")) -> None:
    assert response["request-id"] == response["x-request-id"]
    for kind in kinds:
        for part in ("limit", "remaining"):
            assert (
                response[f"anthropic-ratelimit-{kind}-{part}"]
                == response[f"x-ratelimit-{part}-{kind}"]
            )
        reset = datetime.strptime(response[f"anthropic-ratelimit-{kind}-reset"], RFC3339).replace(
            tzinfo=UTC
        )
        wait = timedelta(milliseconds=_duration_ms(response[f"x-ratelimit-reset-{kind}"]))
        assert (
            sent_after.replace(microsecond=0) + wait
            <= reset
            <= datetime.now(UTC) + wait + timedelta(seconds=1)
        )


def test_whole_streamed_and_rate_limited_answers_mirror_the_limits(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant(on_plan=seeding.plan("two-a-minute", requests_per_minute=2))
    started = datetime.now(UTC)

    whole = message(tenant.secret)
    streamed = message(tenant.secret, stream=True)
    b"".join(streamed.streaming_content)
    limited = message(tenant.secret)

    assert whole.status_code == streamed.status_code == 200
    assert limited.status_code == 429
    for response in (whole, streamed):
        assert_mirrored(response, sent_after=started)
    # Unkey's refusal (KEY_PROVIDER=unkey) reports its requests limit only: what is there is mirrored.
    kinds = [
        kind for kind in ("requests", "tokens") if limited.has_header(f"x-ratelimit-limit-{kind}")
    ]
    assert "requests" in kinds
    assert_mirrored(limited, sent_after=started, kinds=kinds)
    assert whole["anthropic-ratelimit-requests-limit"] == "2"
    assert (
        whole["anthropic-ratelimit-requests-remaining"],
        limited["anthropic-ratelimit-requests-remaining"],
    ) == ("1", "0")


def test_every_other_answer_under_v1_messages_has_a_request_id(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()

    answers = [
        message(tenant.secret, model="no-such-model"),  # refused before any limit is read
        message("ctr_live_" + "F" * 43),
        message(tenant.secret, max_tokens=0),
        Client().get("/v1/messages"),
        post(
            "/v1/messages/count_tokens",
            tenant.secret,
            {"model": seeding.MODEL, "messages": MESSAGES},
        ),
        Client().get("/v1/messages/count_tokens"),
        post("/v1/messages/batches", tenant.secret, {}),
    ]

    assert [r.status_code for r in answers] == [404, 401, 400, 405, 200, 405, 404]
    for response in answers:
        assert response["request-id"] == response["x-request-id"]
        assert not response.has_header("anthropic-ratelimit-requests-limit")


def test_openai_answers_keep_their_own_headers(router_url):
    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()

    response = post(
        "/v1/chat/completions", tenant.secret, {"model": seeding.MODEL, "messages": MESSAGES}
    )

    assert response.status_code == 200 and response.has_header("x-ratelimit-limit-requests")
    assert not response.has_header("request-id") and not response.has_header(
        "anthropic-ratelimit-requests-limit"
    )


@pytest.mark.parametrize(
    "ms", [0, 1, 250, 999, 1000, 1001, 59_999, 60_000, 61_000, 3_600_000, 3_723_000]
)
def test_reset_durations_read_back(ms):
    assert _duration_ms(_duration(ms)) in (ms, -(-ms // 1000) * 1000)  # whole seconds round up


def test_resets_are_rfc3339_times_rounded_up_to_the_second():
    now = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    headers = {
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "40",
        "x-ratelimit-reset-tokens": "6m0s",
    }

    assert anthropic_headers(headers, request_id="req_x", now=now) == {
        "request-id": "req_x",
        "anthropic-ratelimit-tokens-limit": "100",
        "anthropic-ratelimit-tokens-remaining": "40",
        "anthropic-ratelimit-tokens-reset": "2026-03-01T12:06:01Z",
    }
