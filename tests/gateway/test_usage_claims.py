"""A router's usage is a claim (issue 15): billed at most what was asked (max_tokens) and
what the Portal counted (the prompt it sent, the text it got), within gateway/tokens.py's
tolerance; a claim cut down is flagged on the request log and usage event, counted per
router in /metrics, and shown on the ops dashboard next to the router's disable control."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from gateway import tokens
from gateway.calls import Call, make_answer
from infra import metrics
from metering.models import RequestLog, UsageEvent
from pools import services as pool_services
from tests.factories import seeding

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "What is the flow?"}]
ABSURD = 5_000_000  # the simulator's true counts times this: tens of millions of tokens


def chat(secret: str, **body):
    return Client().post(
        "/v1/chat/completions",
        data=json.dumps({"model": seeding.MODEL, "messages": MESSAGES, **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def micro_usd(prompt: int, completion: int, prices=seeding.PRICES) -> int:
    return (prompt * prices[0] + completion * prices[1] + 999_999) // 1_000_000


def capped_count(router_id: int) -> float:
    return metrics.USAGE_CAPPED.labels(str(router_id))._value.get()


def streamed_usage(response) -> dict:
    text = b"".join(response.streaming_content).decode()
    events = [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    return next(event["usage"] for event in reversed(events) if event.get("usage"))


# --- the tolerance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, honest",
    [
        ("你好世界" * 75, 300),  # CJK: about a token a character, four times the estimate
        ("🙂" * 40, 160),  # emoji under byte fallback: four tokens each
        ("1234567890" * 20, 200),  # digits split one per token
        ('{"a":1,"b":[2,3]},' * 20, 15 * 20),  # dense JSON
    ],
)
def test_text_real_tokenizers_spend_more_on_than_the_estimate_is_never_capped(text, honest):
    assert honest > tokens.estimate_tokens(text) * 2
    assert tokens.capped(honest, text) == honest


def test_english_is_capped_at_about_two_and_a_half_times_the_estimate():
    text = "The quick brown fox jumps over the lazy dog. " * 40
    ceiling = tokens.ceiling(text)
    assert 2 * tokens.estimate_tokens(text) < ceiling < 3 * tokens.estimate_tokens(text)
    assert tokens.capped(10**8, text) == ceiling
    assert tokens.capped(10**8, "") == tokens.SLACK_TOKENS


def test_a_chat_prompt_allows_each_message_its_template_tokens():
    messages = [{"role": "user", "content": "hi"}] * 100
    honest = 100 * 6  # "hi" plus role markers, as a router's own chat template counts it
    assert tokens.capped(honest, messages) == honest
    assert tokens.capped(10**8, messages) == tokens.prompt_ceiling(messages) < 2000


def test_make_answer_caps_each_count_and_flags_the_call():
    call = Call(
        request_id="req_x", endpoint="chat.completions", started=0.0, now=None, client_ip=None
    )
    call.max_tokens, call.router_prompt = 8, "<|im_start|>user\nWhat is the flow?<|im_end|>\n"
    answer = make_answer(call, text="Tokens of text.", finish="length", usage=(10**8, 10**8))
    assert answer.completion_tokens == 8
    assert answer.prompt_tokens == tokens.ceiling(call.router_prompt) < 100
    assert call.usage_capped

    honest = Call(
        request_id="req_y", endpoint="chat.completions", started=0.0, now=None, client_ip=None
    )
    honest.max_tokens, honest.router_prompt = 8, call.router_prompt
    answer = make_answer(honest, text="Tokens of text.", finish="length", usage=(12, 8))
    assert (answer.prompt_tokens, answer.completion_tokens) == (12, 8)
    assert not honest.usage_capped


# --- through the gateway --------------------------------------------------------------------


def test_an_over_reporting_router_is_billed_what_was_asked_and_sent_and_flagged(simulator):
    """The finding: max_tokens=8 answered with 99,999,999 + 99,999,999 tokens of usage
    billed $50 (counts above 100M are already ignored as malformed: the Portal counts)."""
    catalog = seeding.catalog(router_urls=[simulator(usage_multiplier=ABSURD)])
    router = catalog.routers[0]
    tenant = seeding.tenant()
    before = capped_count(router.pk)

    response = chat(tenant.secret, max_tokens=8)

    assert response.status_code == 200
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == 8  # what was asked
    assert 0 < usage["prompt_tokens"] < 200  # what was sent, with its tolerance
    event = UsageEvent.objects.get(request_id=response["x-request-id"])
    log = RequestLog.objects.get(request_id=response["x-request-id"])
    assert (event.prompt_tokens, event.completion_tokens) == (usage["prompt_tokens"], 8)
    assert event.cost == micro_usd(usage["prompt_tokens"], 8) < 10_000  # cents, not $50
    assert event.usage_capped and log.usage_capped and not event.estimated
    assert capped_count(router.pk) == before + 1


def test_a_stream_from_an_over_reporting_router_is_capped_too(simulator):
    catalog = seeding.catalog(router_urls=[simulator(usage_multiplier=ABSURD)])
    tenant = seeding.tenant()

    response = chat(
        tenant.secret, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )

    usage = streamed_usage(response)
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens"] < 200
    event = UsageEvent.objects.get(request_id=response["x-request-id"])
    assert (event.prompt_tokens, event.completion_tokens) == (usage["prompt_tokens"], 5)
    assert event.usage_capped
    assert RequestLog.objects.get(request_id=response["x-request-id"]).router_id == (
        catalog.routers[0].pk
    )


def test_an_honest_router_is_billed_its_own_counts_unflagged(simulator):
    seeding.catalog(router_urls=[simulator()])
    tenant = seeding.tenant()

    response = chat(tenant.secret, max_tokens=7)

    event = UsageEvent.objects.get(request_id=response["x-request-id"])
    assert event.completion_tokens == 7 and not event.usage_capped


# --- the ops dashboard ----------------------------------------------------------------------


def test_the_dashboard_counts_over_reports_per_router_and_links_its_disable_control(
    staff_client, fast_state
):
    pool = pool_services.pool_create(name="gemma4")
    liar = pool_services.router_create(
        pool=pool, name="liar", base_url="http://127.0.0.1:9", api_key="rk-x"
    )
    honest = pool_services.router_create(
        pool=pool, name="honest", base_url="http://127.0.0.2:9", api_key="rk-x"
    )
    now = timezone.now()
    for i, (router, capped, hours_ago) in enumerate(
        [(liar, True, 1), (liar, True, 5), (liar, True, 30), (honest, False, 1)]
    ):
        RequestLog.objects.create(
            request_id=f"req_over{i:020d}",
            endpoint="chat.completions",
            router_id=router.pk,
            status_code=200,
            latency_ms=5,
            usage_capped=capped,
            created_at=now - timedelta(hours=hours_ago),
        )

    html = staff_client.get("/admin/ops/dashboard/").content.decode()

    assert "Over-reports (24 h)" in html
    row = html[html.index(">liar <") :]
    row = row[: row.index("</tr>")]
    assert '<span class="ops-warn">2</span>' in row  # the one 30 hours ago is outside
    assert f"/admin/metering/requestlog/?router_id={liar.pk}&amp;usage_capped__exact=1" in row
    assert "/admin/pools/router/?q=liar" in row and "disable (over-reports)" in row
    other = html[html.index(">honest <") :]
    assert "disable (over-reports)" not in other[: other.index("</tr>")]
