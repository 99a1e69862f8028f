"""The official OpenAI and Anthropic SDKs against a live gateway process and simulated routers.

Every answer carries `x-request-id`; successes carry `x-ratelimit-*`; every failure is
the SDK's matching exception with the stable error body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import anthropic
import openai
import pytest
import requests
from django.db import transaction
from django.utils import timezone

from accounts.invalidation import org_changed_on_commit
from accounts.models import Organization
from apikeys.services import api_key_create, api_key_disable, api_key_revoke
from gateway.demo import seed_demo
from metering.models import RequestLog, UsageEvent
from metering.pricing import price_micro_usd
from pools.models import Model
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import GatewayServer, Simulator, dead_url
from tests.support.wire import REQUEST_ID, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODEL = "gemma-4-26b"
MESSAGES = [{"role": "user", "content": "Say hello to the end-to-end suite."}]
PUBLIC_NAMES = ["default", "gemma-4-26b", "gemma4", "oss-120b", "oss-20b", "qwen", "qwen-3-32b"]


@dataclass
class Live:
    server: GatewayServer
    sims: list[Simulator]
    org: Organization
    key: str

    def openai(self, key: str | None = None, **options) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.server.url}/v1",
            api_key=self.key if key is None else key,
            max_retries=0,
            timeout=20,
            **options,
        )

    def anthropic(self, key: str | None = None) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.server.url,
            api_key=self.key if key is None else key,
            max_retries=0,
            timeout=20,
        )


@pytest.fixture
def live(simulators, gateway):
    """`live(**server_env)`: the demo catalog on two simulated routers that demand the router
    key, the demo account on the pro plan, and a gateway process."""

    def start(**server_env) -> Live:
        sims = simulators(2, require_key=seeding.ROUTER_KEY)
        server = gateway(**server_env)  # boots while the data is seeded
        seeding.ensure_seed_plans()
        demo = seed_demo(
            router_urls=[s.url for s in sims], router_key=seeding.ROUTER_KEY, now=timezone.now()
        )
        return Live(
            server=server, sims=sims, org=Organization.objects.get(pk=demo.org_id), key=demo.api_key
        )

    return start


def expect_error(exc_type: type[Exception], call, *, status: int, code: str, param: object = ...):
    """The call raises `exc_type` with the stable body; returns the exception."""
    with pytest.raises(exc_type) as info:
        call()
    err = info.value
    assert type(err) is exc_type, repr(err)
    assert err.status_code == status
    assert_stable_error(err.response.json(), code=code, param=param)
    assert err.code == code
    assert re.fullmatch(REQUEST_ID, err.response.headers["x-request-id"])
    return err


def routed_completions(live: Live) -> int:
    return sum(sim.completions() for sim in live.sims)


# --- success ------------------------------------------------------------------------------


def test_chat_completion(live):
    env = live()

    raw = env.openai().chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=8
    )
    completion = raw.parse()

    request_id = raw.headers["x-request-id"]
    assert re.fullmatch(REQUEST_ID, request_id)
    assert completion.id == "chatcmpl-" + request_id[4:]
    assert (completion.object, completion.model) == ("chat.completion", MODEL)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert len(choice.message.content) == 8 * 4  # the simulator's tokens are 4 characters
    assert choice.finish_reason == "length"  # max_tokens 8 cut the simulator's 16 tokens
    usage = completion.usage
    assert usage.completion_tokens == 8 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    for name in ("limit", "remaining", "reset"):
        assert raw.headers[f"x-ratelimit-{name}-requests"]
        assert raw.headers[f"x-ratelimit-{name}-tokens"]
    assert raw.headers["x-ratelimit-limit-requests"] == "600"  # the pro plan
    assert int(raw.headers["x-ratelimit-remaining-requests"]) == 599

    event = UsageEvent.objects.get(request_id=request_id)
    assert (event.prompt_tokens, event.completion_tokens, event.estimated) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        False,
    )
    model = Model.objects.get(name=MODEL)
    assert event.cost == price_micro_usd(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        input_per_mtok=model.input_price_per_mtok,
        output_per_mtok=model.output_price_per_mtok,
    )
    assert RequestLog.objects.get(request_id=request_id).status_code == 200
    assert routed_completions(env) == 1


def test_chat_stream_with_usage_matches_the_whole_answer(live):
    env = live()
    client = env.openai()
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())

    assert re.fullmatch(REQUEST_ID, raw.headers["x-request-id"])
    assert raw.headers["x-ratelimit-limit-requests"] == "600"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    *text_chunks, usage_chunk = chunks
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert all(c.usage is None for c in text_chunks)
    text = "".join(c.choices[0].delta.content or "" for c in text_chunks)
    assert text == whole.choices[0].message.content and text
    assert text_chunks[-1].choices[0].finish_reason == "stop"
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens == 16
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens

    request_id = raw.headers["x-request-id"]
    event = eventually(lambda: UsageEvent.objects.filter(request_id=request_id).first())
    assert event.completion_tokens == 16 and not event.estimated
    assert RequestLog.objects.get(request_id=request_id).streamed


def test_text_completion_whole_and_streamed(live):
    env = live()
    client = env.openai()
    prompt = "Once upon a time"

    whole = client.completions.create(model="oss-20b", prompt=prompt, max_tokens=5)
    chunks = list(
        client.completions.create(
            model="oss-20b",
            prompt=prompt,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert (whole.object, whole.model) == ("text_completion", "oss-20b")
    assert len(whole.choices[0].text) == 5 * 4 and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5
    assert (
        whole.usage.prompt_tokens == (len(prompt) + 3) // 4
    )  # a text prompt reaches the router as is
    *text_chunks, usage_chunk = chunks
    assert "".join(c.choices[0].text for c in text_chunks) == whole.choices[0].text
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert usage_chunk.usage.completion_tokens == 5
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens


def test_models_list_holds_the_public_names_the_key_may_use(live):
    env = live()
    restricted = api_key_create(
        org=env.org,
        created_by=None,
        name="oss only",
        now=timezone.now(),
        allowed_models=["oss-20b"],
    )

    raw = env.openai().models.with_raw_response.list()

    assert sorted(m.id for m in raw.parse()) == PUBLIC_NAMES
    assert re.fullmatch(REQUEST_ID, raw.headers["x-request-id"])
    assert [m.id for m in env.openai(restricted.plaintext).models.list()] == ["oss-20b"]


# --- errors: identity -----------------------------------------------------------------------


def test_missing_bad_and_revoked_keys_are_authentication_errors(live):
    env = live()
    revoked = api_key_create(org=env.org, created_by=None, name="old", now=timezone.now())
    env.openai(revoked.plaintext).models.list()  # warm: the gateway has seen it live
    api_key_revoke(key=revoked.key, actor=None, now=timezone.now())

    def chat(key):
        return lambda: env.openai(key).chat.completions.create(model=MODEL, messages=MESSAGES)

    missing = requests.post(
        f"{env.server.url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}
    )
    assert missing.status_code == 401
    assert_stable_error(missing.json(), code="invalid_api_key")
    assert re.fullmatch(REQUEST_ID, missing.headers["x-request-id"])
    no_key = openai.OpenAI(
        base_url=f"{env.server.url}/v1",
        api_key="unused",
        default_headers={"Authorization": ""},
        max_retries=0,
    )
    err = expect_error(
        openai.AuthenticationError,
        lambda: no_key.chat.completions.create(model=MODEL, messages=MESSAGES),
        status=401,
        code="invalid_api_key",
    )
    assert "didn't provide an API key" in err.message
    expect_error(
        openai.AuthenticationError, chat("sk-not-a-portal-key"), status=401, code="invalid_api_key"
    )
    well_formed = "ctr_live_" + "A" * 43
    expect_error(openai.AuthenticationError, chat(well_formed), status=401, code="invalid_api_key")
    expect_error(
        openai.AuthenticationError, chat(revoked.plaintext), status=401, code="api_key_revoked"
    )
    expect_error(
        openai.AuthenticationError,
        lambda: env.openai(revoked.plaintext).models.list(),
        status=401,
        code="api_key_revoked",
    )
    assert routed_completions(env) == 0


def test_disabled_key_paused_org_and_restricted_model_are_permission_errors(live):
    env = live()
    now = timezone.now()
    disabled = api_key_create(org=env.org, created_by=None, name="off", now=now)
    restricted = api_key_create(
        org=env.org, created_by=None, name="oss", now=now, allowed_models=["oss-20b"]
    )
    api_key_disable(key=disabled.key, actor=None, now=now)

    def chat(key, model=MODEL):
        return lambda: env.openai(key).chat.completions.create(model=model, messages=MESSAGES)

    expect_error(
        openai.PermissionDeniedError, chat(disabled.plaintext), status=403, code="api_key_disabled"
    )
    err = expect_error(
        openai.PermissionDeniedError,
        chat(restricted.plaintext),
        status=403,
        code="model_not_allowed",
        param="model",
    )
    assert MODEL in err.response.json()["error"]["message"]
    # An alias of the allowed model is the allowed model.
    assert (
        env.openai(restricted.plaintext)
        .chat.completions.create(model="oss-20b", messages=MESSAGES)
        .choices
    )

    env.openai().models.list()
    env.openai().chat.completions.create(
        model=MODEL, messages=MESSAGES
    )  # cached context, then a pause:
    with transaction.atomic():
        Organization.objects.filter(pk=env.org.pk).update(status=Organization.Status.PAUSED)
        org_changed_on_commit(env.org.pk)
    expect_error(openai.PermissionDeniedError, chat(env.key), status=403, code="account_paused")
    expect_error(
        openai.PermissionDeniedError,
        lambda: env.openai().models.list(),
        status=403,
        code="account_paused",
    )


def test_unknown_model_is_not_found(live):
    env = live()

    err = expect_error(
        openai.NotFoundError,
        lambda: env.openai().chat.completions.create(model="no-such-model", messages=MESSAGES),
        status=404,
        code="model_not_found",
        param="model",
    )

    assert "no-such-model" in err.message
    assert routed_completions(env) == 0


# --- errors: limits ---------------------------------------------------------------------------


def test_requests_per_minute_is_a_rate_limit_error_with_retry_after(live):
    env = live()
    tight = seeding.tenant(
        "tight@example.com", on_plan=seeding.plan("tight", requests_per_minute=2)
    )
    client = env.openai(tight.secret)
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)

    err = expect_error(
        openai.RateLimitError,
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4),
        status=429,
        code="rate_limit_exceeded",
    )

    headers = err.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert err.type == "rate_limit_error"
    assert "x-should-retry" not in headers


def test_spent_allowance_is_insufficient_quota_that_should_not_be_retried(live):
    env = live()
    one = seeding.tenant("one@example.com", on_plan=seeding.plan("one-a-week", weekly_requests=1))
    little = seeding.tenant("little@example.com", on_plan=seeding.plan("little", weekly_tokens=50))
    env.openai(one.secret).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)

    for secret, max_tokens in ((one.secret, 4), (little.secret, 100)):
        err = expect_error(
            openai.RateLimitError,
            lambda secret=secret, max_tokens=max_tokens: env.openai(secret).chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=max_tokens
            ),
            status=429,
            code="insufficient_quota",
        )
        assert err.response.headers["x-should-retry"] == "false"
        assert err.type == "insufficient_quota"
    assert routed_completions(env) == 1


# --- errors: the request ------------------------------------------------------------------------


def test_bad_bodies_are_bad_request_errors_naming_the_param(live):
    env = live()
    client = env.openai()

    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=5),
        status=400,
        code="invalid_request_error",
        param="temperature",
    )
    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(
            model=MODEL, messages=[{"role": "robot", "content": "hi"}]
        ),
        status=400,
        code="invalid_request_error",
        param="messages[0].role",
    )
    expect_error(
        openai.BadRequestError,
        lambda: client.completions.create(model="oss-20b", prompt="hi", max_tokens=0),
        status=400,
        code="invalid_request_error",
        param="max_tokens",
    )
    not_json = requests.post(
        f"{env.server.url}/v1/chat/completions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {env.key}"},
    )
    assert not_json.status_code == 400
    assert_stable_error(not_json.json(), code="invalid_json")
    assert routed_completions(env) == 0
    assert not UsageEvent.objects.exists()


def test_body_over_the_upload_limit_is_413(live):
    env = live(MAX_REQUEST_BODY_BYTES="65536")
    body = (
        b'{"model": "gemma-4-26b", "messages": [{"role": "user", "content": "'
        + b"x" * 70_000
        + b'"}]}'
    )

    response = requests.post(
        f"{env.server.url}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {env.key}", "Content-Type": "application/json"},
        timeout=20,
    )

    assert response.status_code == 413
    assert_stable_error(response.json(), code="request_too_large")
    assert re.fullmatch(REQUEST_ID, response.headers["x-request-id"])
    assert routed_completions(env) == 0


def test_a_chunked_body_is_read_within_the_limit(live):
    env = live(MAX_REQUEST_BODY_BYTES="65536")
    headers = {"Authorization": f"Bearer {env.key}", "Content-Type": "application/json"}

    def chunked(*parts: bytes):
        yield from parts  # requests sends a generator body chunked

    small = requests.post(
        f"{env.server.url}/v1/chat/completions",
        headers=headers,
        timeout=20,
        data=chunked(
            b'{"model": "gemma-4-26b", ', b'"messages": [{"role": "user", "content": "hi"}]}'
        ),
    )
    large = requests.post(
        f"{env.server.url}/v1/chat/completions",
        headers=headers,
        timeout=20,
        data=chunked(
            b'{"model": "gemma-4-26b", "messages": [{"role": "user", "content": "',
            *[b"x" * 10_000] * 8,
            b'"}]}',
        ),
    )

    assert small.status_code == 200, small.text
    assert large.status_code == 413, large.text


# --- errors: upstream ------------------------------------------------------------------------------


def test_all_routers_down_is_503_no_healthy_router(live):
    env = live()
    seeding.catalog(
        router_urls=[dead_url(), dead_url()], model="down-model", aliases=(), pool="down"
    )

    err = expect_error(
        openai.InternalServerError,
        lambda: env.openai().chat.completions.create(model="down-model", messages=MESSAGES),
        status=503,
        code="no_healthy_router",
    )

    body = err.response.text
    assert "127.0.0.1" not in body and "router-" not in body  # no router internals
    assert (
        RequestLog.objects.get(request_id=err.response.headers["x-request-id"]).error_code
        == "no_healthy_router"
    )
    assert not UsageEvent.objects.exists()


def test_router_slower_than_the_read_timeout_is_504_upstream_timeout(live):
    env = live(ROUTER_READ_TIMEOUT="0.5")
    for sim in env.sims:
        sim.configure(latency_ms=1500)

    err = expect_error(
        openai.InternalServerError,
        lambda: env.openai().chat.completions.create(model=MODEL, messages=MESSAGES),
        status=504,
        code="upstream_timeout",
    )

    assert err.type == "timeout"
    assert not UsageEvent.objects.exists()


# --- Anthropic ---------------------------------------------------------------------------------------


def test_anthropic_messages_whole_and_streamed(live):
    env = live()
    client = env.anthropic()

    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    message = raw.parse()
    long = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, system="Be brief.")
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=MESSAGES, system="Be brief."
    ) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert re.fullmatch(REQUEST_ID, raw.headers["x-request-id"])
    assert message.id == "msg_" + raw.headers["x-request-id"][4:]
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert len(message.content[0].text) == 8 * 4
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 8 and message.usage.input_tokens > 0
    assert long.stop_reason == "end_turn" and long.usage.output_tokens == 16
    assert streamed_text == long.content[0].text
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (long.usage.input_tokens, 16)
    assert eventually(lambda: UsageEvent.objects.count() == 3)


def test_anthropic_errors_have_the_anthropic_shape(live):
    env = live()

    with pytest.raises(anthropic.AuthenticationError) as info:
        env.anthropic("ctr_live_" + "B" * 43).messages.create(
            model=MODEL, max_tokens=8, messages=MESSAGES
        )
    with pytest.raises(anthropic.NotFoundError) as missing:
        env.anthropic().messages.create(model="no-such-model", max_tokens=8, messages=MESSAGES)
    with pytest.raises(anthropic.BadRequestError) as bad:
        env.anthropic().messages.create(
            model=MODEL, max_tokens=8, messages=MESSAGES, extra_body={"temperature": 1.5}
        )

    for err, type_ in (
        (info.value, "authentication_error"),
        (missing.value, "not_found_error"),
        (bad.value, "invalid_request_error"),
    ):
        body = err.response.json()
        assert body["type"] == "error" and set(body) <= {"type", "error", "request_id"}
        assert body["error"]["type"] == type_ and body["error"]["message"]
        assert re.fullmatch(REQUEST_ID, err.response.headers["x-request-id"])
    assert info.value.status_code == 401
