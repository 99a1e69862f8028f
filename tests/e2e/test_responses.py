"""`POST /v1/responses` with the official openai SDK against a live gateway and simulated
routers: text, instructions, a function call round trip, `text.format`, streams through
`responses.stream`, refusals, and usage billed as the client was told."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest
import requests

from metering.models import RequestLog, UsageEvent
from tests.support.wire import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
ASK = "What is the weather in Paris?"
MODELS = ["default", "qwen"]


def request_id(response) -> str:
    """The request behind a response (streamed ones carry no `_request_id`): `resp_X` is `req_X`'s."""
    return "req_" + response.id.removeprefix("resp_")


def billed(response) -> tuple[int, int]:
    event = eventually(lambda: UsageEvent.objects.filter(request_id=request_id(response)).first())
    return event.prompt_tokens, event.completion_tokens


def last_prompt(sim) -> str:
    return sim.stats()["recent_completions"][-1]["body"]["prompt"]


@pytest.mark.parametrize("model", MODELS)
def test_text_is_a_response_billed_as_its_usage(agent, model):
    client, _, _, _ = agent
    response = client.responses.create(model=model, input="Say something.")
    assert (
        response.id.startswith("resp_")
        and response.object == "response"
        and response.status == "completed"
    )
    assert response.output_text and response.output[0].type == "message"
    assert (
        response.usage.total_tokens
        == response.usage.input_tokens + response.usage.output_tokens
        > 0
    )
    assert billed(response) == (response.usage.input_tokens, response.usage.output_tokens)
    log = RequestLog.objects.get(request_id=request_id(response))
    assert request_id(response) == response._request_id
    assert (log.endpoint, log.status_code) == ("responses", 200)


def test_instructions_reach_the_model_as_system_text(agent):
    client, sim, _, _ = agent
    response = client.responses.create(
        model="qwen",
        instructions="Answer like a pirate.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Say something."}]}],
        max_output_tokens=200,
        temperature=0.3,
    )
    assert response.instructions == "Answer like a pirate." and response.output_text
    assert (response.max_output_tokens, response.temperature) == (200, 0.3)
    prompt = last_prompt(sim)
    assert prompt.startswith("<|im_start|>system\nAnswer like a pirate.")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip(agent, model, stream):
    client, sim, _, _ = agent
    if stream:
        with client.responses.stream(model=model, input=ASK, tools=[WEATHER]) as events:
            kinds = [event.type for event in events]
            first = events.get_final_response()
        assert (
            "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
        )
    else:
        first = client.responses.create(model=model, input=ASK, tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (
        call.call_id.startswith("call_")
        and call.id.startswith("fc_")
        and call.name == "get_weather"
    )
    assert set(json.loads(call.arguments)) == {"city", "unit"}
    assert first.output_text == ""

    final = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": ASK},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": "18 degrees and sunny",
            },
        ],
    )
    assert "18 degrees and sunny" in final.output_text
    assert [item.type for item in final.output] == ["message"]
    assert sim.stats()["tool_result_answers"] >= 1
    assert billed(final) == (final.usage.input_tokens, final.usage.output_tokens)


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    tags: list[str]


@pytest.mark.parametrize("model", MODELS)
def test_text_format_json_schema_gives_json(agent, model):
    client, _, _, _ = agent
    schema = Weather.model_json_schema() | {"additionalProperties": False}
    response = client.responses.create(
        model=model,
        input=ASK,
        text={
            "format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}
        },
    )
    value = json.loads(response.output_text)
    assert Weather.model_validate(value)
    assert response.text.format.type == "json_schema"
    parsed = client.responses.parse(model=model, input=ASK, text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)


def test_a_text_stream_with_the_stream_helper(agent):
    client, _, _, _ = agent
    deltas, kinds = [], []
    with client.responses.stream(model="qwen", input="Say something.") as events:
        for event in events:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = events.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert len(deltas) > 1 and "".join(deltas) == final.output_text
    assert final.usage.output_tokens > 0
    assert billed(final) == (final.usage.input_tokens, final.usage.output_tokens)
    log = RequestLog.objects.get(request_id=request_id(final))
    assert log.streamed and log.endpoint == "responses"


def test_an_answer_cut_by_max_output_tokens_is_incomplete(agent):
    client, _, _, _ = agent
    response = client.responses.create(
        model="qwen", input="Say something long.", max_output_tokens=3
    )
    assert (
        response.status == "incomplete"
        and response.incomplete_details.reason == "max_output_tokens"
    )
    events = list(
        client.responses.create(
            model="qwen", input="Say something long.", max_output_tokens=3, stream=True
        )
    )
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 3


def test_a_router_failing_mid_stream_ends_with_response_failed(agent):
    client, sim, _, _ = agent
    sim.configure(disconnect_after_tokens=3)
    events = list(client.responses.create(model="qwen", input="Say something.", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "upstream_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_previous_response_id_and_stored_responses_are_refused(agent):
    client, _, server, demo = agent
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="qwen", input="And then?", previous_response_id="resp_123")
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "previous_response_id")
    assert "not stored" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model="qwen", input=[{"type": "reasoning", "id": "rs_1", "summary": []}]
        )
    assert info.value.param == "input[0].type"
    for call in (client.responses.retrieve, client.responses.delete, client.responses.cancel):
        with pytest.raises(openai.BadRequestError) as info:
            call("resp_123")
        assert (
            "not stored" in info.value.message
            and info.value.body["type"] == "invalid_request_error"
        )
    assert not UsageEvent.objects.exists()
    missing = requests.post(
        f"{server.url}/v1/responses/input_tokens",
        headers={"Authorization": f"Bearer {demo.api_key}"},
    )
    assert missing.status_code == 404
