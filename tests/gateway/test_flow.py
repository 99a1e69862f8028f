"""The request flow in process: durable writes, usage the router did not report, clients
that leave mid-stream, no customer text at rest, and a /health that keeps router internals in."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import requests
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone

from gateway.templates import render_prompt
from gateway.tokens import estimate_tokens
from metering.models import RequestLog, UsageEvent
from pools.services import pool_set_status
from tests.factories import seeding
from tests.support.wire import eventually

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "What is the flow?"}]


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


def stream_events(response) -> list:
    """Decoded `data:` payloads of a streamed response."""
    text = b"".join(response.streaming_content).decode()
    events = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def hang_up(response) -> None:
    """The client goes away: close the response as a server does when the socket drops.

    Closing fires `request_finished`, whose handler would close the test's database
    connection (it is inside the test's transaction); keep it open.
    """
    with mock.patch.object(connection, "close_if_unusable_or_obsolete"):
        response.close()


def micro_usd(prompt: int, completion: int, prices=seeding.PRICES) -> int:
    """Prices are per million tokens; cost rounds up to the whole micro-dollar."""
    numerator = prompt * prices[0] + completion * prices[1]
    return (numerator + 999_999) // 1_000_000


# --- durable writes -------------------------------------------------------------------------


def test_one_request_writes_its_log_and_a_usage_event_priced_in_integer_micro_dollars(simulator):
    catalog = seeding.catalog(router_urls=[simulator()])
    tenant = seeding.tenant()

    response = chat(tenant.secret, model=seeding.ALIAS, max_tokens=7)

    assert response.status_code == 200
    usage = response.json()["usage"]
    request_id = response["x-request-id"]
    log = RequestLog.objects.get(request_id=request_id)
    event = UsageEvent.objects.get(request_id=request_id)
    assert (log.status_code, log.error_code, log.endpoint, log.streamed) == (
        200,
        "",
        "chat.completions",
        False,
    )
    assert (log.org_id, log.api_key_id) == (tenant.org.pk, tenant.key.pk)
    assert log.model_name == event.model_name == seeding.MODEL  # the canonical name, not the alias
    assert (log.route_id, log.router_id) == (catalog.model.routes.get().pk, catalog.routers[0].pk)
    assert (event.prompt_tokens, event.completion_tokens) == (usage["prompt_tokens"], 7)
    assert (log.prompt_tokens, log.completion_tokens) == (
        event.prompt_tokens,
        event.completion_tokens,
    )
    assert (event.org_id, event.api_key_id, event.estimated) == (
        tenant.org.pk,
        tenant.key.pk,
        False,
    )
    assert type(event.cost) is int
    assert event.cost == micro_usd(event.prompt_tokens, event.completion_tokens) > 0


def test_a_failed_usage_write_leaves_no_request_log_behind(simulator, monkeypatch):
    """The log and its usage event commit together: when the event cannot be written
    (here its request id is already taken), neither is."""
    seeding.catalog(router_urls=[simulator()])
    tenant = seeding.tenant()
    request_id = "req_" + "A" * 24
    monkeypatch.setattr("portal.middleware.new_request_id", lambda: request_id)
    UsageEvent.objects.create(
        request_id=request_id,
        org=tenant.org,
        model_name="x",
        prompt_tokens=1,
        completion_tokens=1,
        cost=1,
        created_at=timezone.now(),
    )

    response = chat(tenant.secret)

    assert response["x-request-id"] == request_id
    assert not RequestLog.objects.filter(request_id=request_id).exists()
    assert UsageEvent.objects.get().model_name == "x"


def test_refused_requests_are_logged_without_a_usage_event(simulator):
    seeding.catalog(router_urls=[simulator()])
    tenant = seeding.tenant()

    response = chat(tenant.secret, model="no-such-model")

    assert response.status_code == 404
    log = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (log.status_code, log.error_code, log.org_id) == (404, "model_not_found", tenant.org.pk)
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)
    assert not UsageEvent.objects.exists()


# --- usage the router did not report -----------------------------------------------------------


def test_a_router_that_omits_usage_is_counted_by_the_gateway_and_marked_estimated(simulator):
    seeding.catalog(router_urls=[simulator(omit_usage=True)])
    tenant = seeding.tenant()
    # The router is sent the chat rendered through the route's template; that is what it bills.
    prompt_estimate = estimate_tokens(render_prompt("chatml", MESSAGES))

    whole = chat(tenant.secret)
    streamed = chat(tenant.secret, stream=True, stream_options={"include_usage": True})

    assert whole.json()["usage"] == {
        "prompt_tokens": prompt_estimate,
        "completion_tokens": 16,
        "total_tokens": prompt_estimate + 16,
    }
    events = stream_events(streamed)
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == 16
    for response in (whole, streamed):
        event = UsageEvent.objects.get(request_id=response["x-request-id"])
        assert (event.prompt_tokens, event.completion_tokens, event.estimated) == (
            prompt_estimate,
            16,
            True,
        )
        assert event.cost == micro_usd(prompt_estimate, 16)


# --- a client that leaves mid-stream ------------------------------------------------------------


def test_a_client_leaving_mid_stream_is_billed_for_what_was_served(simulator):
    router = simulator(tokens_per_second=40, completion_tokens=40)  # a one-second stream
    seeding.catalog(router_urls=[router])
    tenant = seeding.tenant(on_plan=seeding.plan("one-at-a-time", concurrent_requests=1))

    response = chat(tenant.secret, stream=True)
    pieces = 0
    for raw in response.streaming_content:
        if b'"content":"' in raw and b'"content":""' not in raw:
            pieces += 1
        if pieces == 3:
            break
    hang_up(response)

    event = UsageEvent.objects.get(request_id=response["x-request-id"])
    assert (event.completion_tokens, event.estimated) == (3, True)
    assert event.prompt_tokens > 0
    log = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (log.error_code, log.streamed, log.completion_tokens) == ("client_disconnected", True, 3)

    # The router's stream was hung up, and the request's concurrency slot freed.
    def abandoned() -> bool:
        return requests.get(f"{router}/_sim/stats", timeout=5).json()["streams_abandoned"] == 1

    assert eventually(abandoned)
    assert chat(tenant.secret).status_code == 200


# --- stop sequences the router ignores ------------------------------------------------------------


def _stop_inside(text: str) -> tuple[str, str]:
    """A stop sequence from the middle of `text`, spanning two simulator tokens, and the text before it."""
    stop = text[21:27]  # tokens are 4 characters: this one starts in the 6th and ends in the 7th
    return stop, text[: text.find(stop)]


def test_the_answer_ends_before_a_stop_sequence_and_only_what_was_sent_is_billed(simulator):
    seeding.catalog(router_urls=[simulator(completion_tokens=40)])
    tenant = seeding.tenant()
    full = chat(tenant.secret).json()["choices"][0]["message"]["content"]
    stop, before = _stop_inside(full)

    whole = chat(tenant.secret, stop=[stop, "never-there"])
    streamed = chat(tenant.secret, stop=stop, stream=True, stream_options={"include_usage": True})

    choice = whole.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (before, "stop")
    events = stream_events(streamed)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2]) == before
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    for response, usage in ((whole, whole.json()["usage"]), (streamed, events[-2]["usage"])):
        event = UsageEvent.objects.get(request_id=response["x-request-id"])
        assert usage["completion_tokens"] == event.completion_tokens == estimate_tokens(before) < 40
        assert event.estimated is True


def test_text_completions_and_anthropic_messages_honour_stop_sequences(simulator):
    seeding.catalog(router_urls=[simulator(completion_tokens=40)])
    tenant = seeding.tenant()
    body = {"model": seeding.MODEL, "prompt": "Count for me."}
    stop, before = _stop_inside(
        post("/v1/completions", tenant.secret, body).json()["choices"][0]["text"]
    )
    completion = post("/v1/completions", tenant.secret, {**body, "stop": stop}).json()["choices"][0]
    assert (completion["text"], completion["finish_reason"]) == (before, "stop")

    body = {"model": seeding.MODEL, "max_tokens": 100, "messages": MESSAGES}
    stop, before = _stop_inside(
        post("/v1/messages", tenant.secret, body).json()["content"][0]["text"]
    )
    message = post(
        "/v1/messages", tenant.secret, {**body, "stop_sequences": ["never-there", stop]}
    ).json()
    assert message["content"][0]["text"] == before
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", stop)
    events = stream_events(
        post("/v1/messages", tenant.secret, {**body, "stop_sequences": [stop], "stream": True})
    )
    deltas = [e["delta"] for e in events if e["type"] in ("content_block_delta", "message_delta")]
    assert "".join(d.get("text", "") for d in deltas[:-1]) == before
    assert (deltas[-1]["stop_reason"], deltas[-1]["stop_sequence"]) == ("stop_sequence", stop)
    assert events[-1]["type"] == "message_stop"


# --- nothing the customer wrote or read is stored ------------------------------------------------


def _stored_text() -> str:
    """Every value of every row of every table, as text."""
    chunks = []
    for model in apps.get_models():
        for row in model.objects.all().values():
            chunks.append(json.dumps(row, default=str, ensure_ascii=False))
    return "\n".join(chunks)


def test_no_prompt_or_completion_text_is_stored(simulator):
    seeding.catalog(router_urls=[simulator()])
    tenant = seeding.tenant()
    secret_words = "zebra-quartz-7f3a confidential plan"
    messages = [
        {"role": "system", "content": f"system {secret_words}"},
        {"role": "user", "content": secret_words},
    ]

    answers = [
        chat(tenant.secret, messages=messages).json()["choices"][0]["message"]["content"],
        post(
            "/v1/completions", tenant.secret, {"model": seeding.MODEL, "prompt": secret_words}
        ).json()["choices"][0]["text"],
        post(
            "/v1/messages",
            tenant.secret,
            {
                "model": seeding.MODEL,
                "max_tokens": 16,
                "system": secret_words,
                "messages": messages[1:],
            },
        ).json()["content"][0]["text"],
    ]
    stream_events(chat(tenant.secret, messages=messages, stream=True))

    stored = _stored_text()
    assert RequestLog.objects.count() == 4 and UsageEvent.objects.count() == 4
    assert "zebra-quartz-7f3a" not in stored
    for answer in answers:
        assert len(answer) == 64 and answer not in stored


# --- /health ----------------------------------------------------------------------------------


def test_health_lists_pools_and_public_names_without_router_internals(simulator):
    router = simulator()
    seeding.catalog(router_urls=[router])
    draining = seeding.catalog(
        router_urls=[router], model="other-model", aliases=("other",), pool="other-pool"
    )
    pool_set_status(pool=draining.pool, status="draining")

    response = Client().get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "message": None,
        "pools": {
            "e2e-pool": {"status": "active", "models": [seeding.ALIAS, seeding.MODEL]},
            "other-pool": {"status": "draining", "models": ["other", "other-model"]},
        },
        "unavailable_models": ["other", "other-model"],
    }
    body = response.content.decode()
    host_port = router.split("//", 1)[1]
    assert host_port not in body and router not in body
    assert seeding.ROUTER_KEY not in body
    assert response["x-request-id"].startswith("req_")


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_without_max_tokens_is_planned_once(router_url, stream):
    """Admission plans the request's tokens on its model (the prompt as each route renders
    it); the max_tokens sent to the router is taken from that plan, not worked out again."""
    from gateway import budget

    seeding.catalog(router_urls=[router_url])
    tenant = seeding.tenant()
    assert chat(tenant.secret, max_tokens=4).status_code == 200  # the key's context is warm
    with mock.patch.object(budget, "prompt_tokens", wraps=budget.prompt_tokens) as planned:
        response = chat(tenant.secret, stream=stream)
        if stream:
            stream_events(response)
        assert response.status_code == 200
    assert planned.call_count == 1
