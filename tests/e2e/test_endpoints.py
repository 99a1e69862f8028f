"""Endpoints and headers the official SDKs read, against a live gateway and simulated routers:
openai `models.retrieve`, anthropic `messages.count_tokens`, Anthropic's request-id and
anthropic-ratelimit-* headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anthropic
import openai
import pytest
from django.utils import timezone

from accounts.models import Organization
from apikeys.services import api_key_create
from gateway.demo import seed_demo
from metering.models import UsageEvent
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.processes import GatewayServer, Simulator
from tests.support.wire import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODEL = "gemma-4-26b"
MESSAGES = [{"role": "user", "content": "Count me, then answer me."}]


@dataclass
class Live:
    server: GatewayServer
    sims: list[Simulator]
    org: Organization
    key: str

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.server.url}/v1", api_key=key or self.key, max_retries=0, timeout=20
        )


@pytest.fixture
def live(simulators, gateway):
    """The demo catalog on two simulated routers, the demo account (pro plan) and a gateway."""
    sims = simulators(2, require_key=seeding.ROUTER_KEY)
    server = gateway()
    seeding.ensure_seed_plans()
    demo = seed_demo(
        router_urls=[s.url for s in sims], router_key=seeding.ROUTER_KEY, now=timezone.now()
    )
    return Live(
        server=server, sims=sims, org=Organization.objects.get(pk=demo.org_id), key=demo.api_key
    )


# --- GET /v1/models/{id} ---------------------------------------------------------------------------


def test_models_retrieve_answers_the_listed_entry_or_not_found(live):
    restricted = api_key_create(
        org=live.org,
        created_by=None,
        name="oss only",
        now=timezone.now(),
        allowed_models=["oss-20b"],
    )
    client = live.openai()
    listed = {m.id: m for m in client.models.list()}

    for name in (MODEL, "gemma4", "default", "oss-20b"):  # canonical names and aliases
        model = client.models.retrieve(name)
        assert model == listed[name]
        assert (model.id, model.object, model.owned_by) == (name, "model", "cortensor")
    assert live.openai(restricted.plaintext).models.retrieve("oss-20b").id == "oss-20b"

    for key, name in (
        (live.key, "no-such-model"),
        (restricted.plaintext, MODEL),
        (restricted.plaintext, "gemma4"),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            live.openai(key).models.retrieve(name)
        assert info.value.code == "model_not_found"
        assert_stable_error(info.value.response.json(), code="model_not_found", param="model")
    with pytest.raises(openai.AuthenticationError):
        live.openai("ctr_live_" + "C" * 43).models.retrieve(MODEL)


# --- POST /v1/messages/count_tokens -----------------------------------------------------------------


def test_anthropic_count_tokens_is_what_the_message_then_bills(live):
    client = anthropic.Anthropic(
        base_url=live.server.url, api_key=live.key, max_retries=0, timeout=20
    )

    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES, system="Be brief.")
    by_alias = client.messages.count_tokens(model="gemma4", messages=MESSAGES, system="Be brief.")
    message = client.messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, system="Be brief."
    )

    assert counted.input_tokens == by_alias.input_tokens == message.usage.input_tokens > 0
    assert eventually(
        lambda: UsageEvent.objects.count() == 1
    )  # the message's; counting bills nothing
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.count_tokens(model="no-such-model", messages=MESSAGES)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=live.server.url, api_key="ctr_live_" + "E" * 43, max_retries=0
        ).messages.count_tokens(model=MODEL, messages=MESSAGES)


# --- Anthropic's headers on /v1/messages --------------------------------------------------------------


def test_anthropic_sdk_reads_request_id_and_the_rate_limit_headers(live):
    client = anthropic.Anthropic(
        base_url=live.server.url, api_key=live.key, max_retries=0, timeout=20
    )

    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    message = raw.parse()
    with client.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream:
        stream.until_done()
        streamed = stream.response.headers
        streamed_id = stream.request_id
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=MESSAGES)

    assert raw.request_id == message._request_id == raw.headers["x-request-id"]
    assert streamed_id == streamed["x-request-id"] != raw.request_id
    assert missing.value.request_id == missing.value.response.headers["x-request-id"]
    for headers in (raw.headers, streamed):
        assert headers["anthropic-ratelimit-requests-limit"] == "600"  # the pro plan
        assert (
            headers["anthropic-ratelimit-requests-remaining"]
            == headers["x-ratelimit-remaining-requests"]
        )
        assert (
            headers["anthropic-ratelimit-tokens-limit"]
            == headers["x-ratelimit-limit-tokens"]
            == "1000000"
        )
        assert (
            headers["anthropic-ratelimit-tokens-remaining"]
            == headers["x-ratelimit-remaining-tokens"]
        )
        for kind in ("requests", "tokens"):
            reset = datetime.fromisoformat(
                headers[f"anthropic-ratelimit-{kind}-reset"].replace("Z", "+00:00")
            )
            assert timedelta(0) <= reset - datetime.now(UTC) <= timedelta(seconds=61)
