"""Token budgets in process: the context window is checked before anything is reserved, and
a request without max_tokens may use what the model can still produce."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings
from django.test import Client

from gateway import budget
from gateway.templates import render_prompt
from gateway.tokens import estimate_tokens
from gateway.validation import InferenceRequest
from metering.models import RequestLog, UsageEvent
from pools.catalog import ModelEntry
from pools.services import model_create
from pools.simulator import start_in_thread
from tests.factories import seeding
from tests.support.errors import assert_stable_error

pytestmark = pytest.mark.django_db

WINDOW, MAX_OUTPUT = 400, 300
MESSAGES = [{"role": "user", "content": "How long may the answer be?"}]
PROMPT = estimate_tokens(render_prompt("chatml", MESSAGES))  # what the router is sent, counted


@pytest.fixture
def router_url():
    url, stop = start_in_thread(quiet=True, completion_tokens=1000)
    yield url
    stop()


@pytest.fixture
def small_model(router_url):
    """The test model with a 400-token window and at most 300 output tokens, on one router."""
    model_create(
        name=seeding.MODEL,
        display_name="Small",
        context_window=WINDOW,
        max_output_tokens=MAX_OUTPUT,
        input_price_per_mtok=seeding.PRICES[0],
        output_price_per_mtok=seeding.PRICES[1],
        aliases=(seeding.ALIAS,),
    )
    return seeding.catalog(router_urls=[router_url])


def post(path: str, secret: str, body: dict):
    return Client().post(
        path,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def chat(secret: str, **body):
    return post(
        "/v1/chat/completions", secret, {"model": seeding.MODEL, "messages": MESSAGES, **body}
    )


def completions_served(router_url: str) -> int:
    return requests.get(f"{router_url}/_sim/stats", timeout=5).json()["completions"]


# --- the window ---------------------------------------------------------------------------------


def allowance_counters(fast_state) -> dict:
    """The weekly allowance counters admission keeps in fast state: requests and reserved tokens."""
    keys = list(fast_state.scan_iter(match=settings.FAST_STATE_PREFIX + "quota:*"))
    assert len(keys) <= 1, keys
    return {k.decode(): int(v) for k, v in fast_state.hgetall(keys[0]).items()} if keys else {}


def test_prompt_plus_max_tokens_over_the_window_is_400_and_spends_nothing(
    small_model, router_url, fast_state, key_provider
):
    tenant = seeding.tenant(on_plan=seeding.plan("three-a-minute", requests_per_minute=3))
    messages = [{"role": "user", "content": "Tell me more. " * 40}]
    prompt = estimate_tokens(render_prompt("chatml", messages))
    too_many = WINDOW - prompt + 1
    assert too_many <= MAX_OUTPUT  # what is sent: nothing capped it

    refused = [
        chat(tenant.secret, messages=messages, max_tokens=too_many),
        chat(tenant.secret, messages=messages, max_tokens=too_many, stream=True),
    ]

    for response in refused:
        error = assert_stable_error(
            response,
            status=400,
            code="context_length_exceeded",
            type_="invalid_request_error",
            param="messages",
        )
        assert error["message"] == (
            f"This model's maximum context length is {WINDOW} tokens. However, you requested {WINDOW + 1} tokens"
            f" ({prompt} in the messages, {too_many} in the completion)."
            " Please reduce the length of the messages or completion."
        )
        log = RequestLog.objects.get(request_id=response["x-request-id"])
        assert (log.status_code, log.error_code, log.org_id) == (
            400,
            "context_length_exceeded",
            tenant.org.pk,
        )
    assert not UsageEvent.objects.exists()
    assert completions_served(router_url) == 0
    # Neither refusal counted against the Portal's limits or the allowance, nor reserved tokens.
    fits = chat(tenant.secret, messages=messages, max_tokens=too_many - 1)
    assert fits.status_code == 200, fits.content
    assert (
        int(fits["x-ratelimit-remaining-tokens"])
        == seeding.LOOSE_LIMITS["tokens_per_minute"] - WINDOW
    )
    assert allowance_counters(fast_state) == {"r": 1, "t": fits.json()["usage"]["total_tokens"]}
    if (
        key_provider is None
    ):  # Unkey's own requests/min counts every verified key, as for any refusal
        assert fits["x-ratelimit-remaining-requests"] == "2"


def test_max_tokens_over_the_model_output_is_capped_before_the_window_is_checked(small_model):
    tenant = seeding.tenant()

    response = chat(tenant.secret, max_tokens=10_000)

    assert response.status_code == 200, response.content
    assert response.json()["usage"]["completion_tokens"] == MAX_OUTPUT


def test_a_prompt_that_fills_the_window_alone_is_refused_without_max_tokens(small_model):
    tenant = seeding.tenant()
    long = [{"role": "user", "content": "x" * (WINDOW * 4)}]

    response = chat(tenant.secret, messages=long)

    error = assert_stable_error(
        response, status=400, code="context_length_exceeded", param="messages"
    )
    prompt = estimate_tokens(render_prompt("chatml", long))
    assert error["message"] == (
        f"This model's maximum context length is {WINDOW} tokens. However, your messages resulted in {prompt}"
        " tokens, which leaves no room for the completion. Please reduce the length of the messages."
    )
    assert not UsageEvent.objects.exists()


def test_text_completions_name_the_prompt_and_anthropic_messages_get_their_shape(small_model):
    tenant = seeding.tenant()
    prompt = "y" * (WINDOW * 4 - 40)  # 390 tokens

    completion = post(
        "/v1/completions",
        tenant.secret,
        {"model": seeding.MODEL, "prompt": prompt, "max_tokens": 20},
    )
    message = post(
        "/v1/messages",
        tenant.secret,
        {
            "model": seeding.MODEL,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": prompt}],
        },
    )

    error = assert_stable_error(
        completion, status=400, code="context_length_exceeded", param="prompt"
    )
    assert "(390 in the prompt, 20 in the completion)" in error["message"]
    assert message.status_code == 400
    body = message.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(
        f"This model's maximum context length is {WINDOW} tokens."
    )
    assert not UsageEvent.objects.exists()


def test_key_checks_come_before_the_window(small_model):
    """Who may not use the model learns nothing about its window."""
    tenant = seeding.tenant(allowed_models=["other-model"])

    response = chat(tenant.secret, max_tokens=WINDOW)

    assert_stable_error(response, status=403, code="model_not_allowed")
    assert_stable_error(
        chat("ctr_live_" + "A" * 43, max_tokens=WINDOW), status=401, code="invalid_api_key"
    )


# --- the default max_tokens ----------------------------------------------------------------------


def test_without_max_tokens_the_answer_may_fill_the_rest_of_the_window(small_model):
    tenant = seeding.tenant()
    long = [{"role": "user", "content": "z" * 1000}]  # leaves less room than the model's max output
    prompt = estimate_tokens(render_prompt("chatml", long))

    short = chat(tenant.secret)
    filled = chat(tenant.secret, messages=long)

    assert (
        short.json()["usage"]["completion_tokens"] == MAX_OUTPUT
    )  # not a fixed 1024, not more than the model makes
    assert filled.json()["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": WINDOW - prompt,
        "total_tokens": WINDOW,
    }
    assert filled.json()["choices"][0]["finish_reason"] == "length"
    # The reservation was the whole worst case: prompt plus the default allowance.
    assert (
        int(filled["x-ratelimit-remaining-tokens"])
        == seeding.LOOSE_LIMITS["tokens_per_minute"] - (PROMPT + MAX_OUTPUT) - WINDOW
    )


# --- the rules ------------------------------------------------------------------------------------


def _entry(window: int = 1000, max_output: int = 300) -> ModelEntry:
    return ModelEntry(
        id=1,
        name="m",
        display_name="M",
        status="enabled",
        context_window=window,
        max_output_tokens=max_output,
        input_price_per_mtok=0,
        output_price_per_mtok=0,
        routes=(),
    )


@pytest.mark.parametrize(
    ("max_tokens", "prompt", "completion", "fits"),
    [
        (None, 100, 300, True),  # the model's max output
        (None, 800, 200, True),  # what the window leaves
        (None, 1000, 0, False),  # nothing left
        (None, 1200, -200, False),
        (50, 100, 50, True),
        (5000, 100, 300, True),  # capped at the max output
        (300, 701, 300, False),
        (300, 700, 300, True),
    ],
)
def test_the_budget(max_tokens, prompt, completion, fits):
    req = InferenceRequest(kind="chat", model="m", max_tokens=max_tokens)

    planned = budget.plan(req, _entry(), prompt_tokens=prompt)

    assert (planned.completion, planned.fits, planned.total) == (
        completion,
        fits,
        prompt + completion,
    )
