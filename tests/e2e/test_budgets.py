"""Requests that can never succeed as sent, through the official SDKs against a live gateway:
each is a 4xx the SDK does not retry, with a message that says what to change."""

from __future__ import annotations

import re

import anthropic
import openai
import pytest
from django.utils import timezone

from gateway.demo import seed_demo
from metering.models import RequestLog, UsageEvent
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.wire import REQUEST_ID

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODEL = "gemma-4-26b"  # the demo catalog: an 8192-token window, at most 2048 output tokens


@pytest.fixture
def live(simulators, gateway):
    """`live() -> (server, simulators, key)`: the demo catalog on two simulated routers and a gateway."""

    def start(**server_env):
        sims = simulators(2, require_key=seeding.ROUTER_KEY)
        server = gateway(**server_env)
        seeding.ensure_seed_plans()
        demo = seed_demo(
            router_urls=[s.url for s in sims], router_key=seeding.ROUTER_KEY, now=timezone.now()
        )
        return server, sims, demo.api_key

    return start


def client(server, key: str, **options) -> openai.OpenAI:
    """Retries on: a refusal below must not be retried by the SDK itself."""
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=key, max_retries=2, timeout=20, **options
    )


def routed(sims) -> int:
    return sum(sim.completions() for sim in sims)


def test_a_prompt_over_the_context_window_is_400_context_length_exceeded(live):
    server, sims, key = live()
    messages = [
        {"role": "user", "content": "word " * 8000}
    ]  # 40,000 characters: about 10,000 tokens

    with pytest.raises(openai.BadRequestError) as info:
        client(server, key).chat.completions.create(model=MODEL, messages=messages, max_tokens=100)

    err = info.value
    assert (err.status_code, err.code, err.param, err.type) == (
        400,
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    error = assert_stable_error(
        err.response.json(), code="context_length_exceeded", param="messages"
    )
    assert re.fullmatch(
        r"This model's maximum context length is 8192 tokens\. However, you requested (\d+) tokens"
        r" \((\d+) in the messages, 100 in the completion\)\. Please reduce the length of the messages or completion\.",
        error["message"],
    )
    assert re.fullmatch(REQUEST_ID, err.response.headers["x-request-id"])
    assert (
        RequestLog.objects.filter(error_code="context_length_exceeded").count() == 1
    )  # sent once: not retried
    assert not UsageEvent.objects.exists()
    assert routed(sims) == 0


def test_without_max_tokens_the_answer_is_not_cut_at_a_fixed_1024(live):
    server, sims, key = live()
    for sim in sims:
        sim.configure(completion_tokens=1500)

    completion = client(server, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write at length."}]
    )

    assert completion.usage.completion_tokens == 1500
    assert completion.choices[0].finish_reason == "stop"


def test_a_router_rejecting_the_request_is_a_400_the_sdks_do_not_retry(live):
    server, sims, key = live()
    for sim in sims:
        sim.configure(failure_rate=1.0, fail_status=422)
    messages = [{"role": "user", "content": "Something the router dislikes."}]

    with pytest.raises(openai.BadRequestError) as openai_err:
        client(server, key).chat.completions.create(model=MODEL, messages=messages)
    with pytest.raises(anthropic.BadRequestError) as anthropic_err:
        anthropic.Anthropic(
            base_url=server.url, api_key=key, max_retries=2, timeout=20
        ).messages.create(model=MODEL, max_tokens=16, messages=messages)

    err = openai_err.value
    assert (err.status_code, err.code, err.type) == (
        400,
        "upstream_rejected_request",
        "invalid_request_error",
    )
    assert "rejected the request as invalid (HTTP 422)" in err.message
    assert (
        "simulated router failure" not in err.response.text and "127.0.0.1" not in err.response.text
    )
    assert anthropic_err.value.status_code == 400
    assert anthropic_err.value.body["error"]["type"] == "invalid_request_error"
    assert routed(sims) == 2  # each request reached one router once: no failover, no SDK retry
    assert RequestLog.objects.filter(error_code="upstream_rejected_request").count() == 2
    assert not UsageEvent.objects.exists()


def test_a_request_larger_than_the_plans_tokens_per_minute_is_a_429_not_to_retry(live):
    server, sims, _ = live()
    tenant = seeding.tenant(
        "small@example.com", on_plan=seeding.plan("small-tpm", tokens_per_minute=1000)
    )
    messages = [{"role": "user", "content": "A long answer, please."}]

    with pytest.raises(openai.RateLimitError) as info:
        client(server, tenant.secret).chat.completions.create(
            model=MODEL, messages=messages, max_tokens=2000
        )

    err = info.value
    assert (err.status_code, err.code, err.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    message = err.response.json()["error"]["message"]
    assert re.fullmatch(
        r"This request needs (\d+) tokens \(prompt (\d+) \+ max_tokens 2000\), more than this plan's limit"
        r" of 1000 tokens per minute; lower max_tokens or shorten the prompt\.",
        message,
    )
    headers = err.response.headers
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers and "retry-after-ms" not in headers
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert (
        RequestLog.objects.filter(error_code="rate_limit_exceeded").count() == 1
    )  # the SDK did not retry
    assert routed(sims) == 0
    assert (
        client(server, tenant.secret)
        .chat.completions.create(model=MODEL, messages=messages, max_tokens=100)
        .choices
    )
