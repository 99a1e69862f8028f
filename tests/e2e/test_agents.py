"""Agent-shaped clients against a live gateway and simulated routers: tool calls, tool
results, forced tool choices and structured outputs, with the official SDKs, whole and
streamed, on the demo catalog's families (gemma for `default`, chatml for `qwen`)."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest
from django.utils import timezone

from metering.models import RequestLog, UsageEvent
from tests.support.wire import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["C", "F"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
MODELS = ["default", "qwen"]


def collect_stream(stream) -> tuple[str, list[dict], str]:
    """(text, tool calls assembled from delta.tool_calls, finish_reason) of a chat stream."""
    text, calls, finish = [], {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text.append(choice.delta.content or "")
        for part in choice.delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
            if part.id:
                call["id"] = part.id
            if part.function and part.function.name:
                call["name"] = part.function.name
            if part.function and part.function.arguments:
                call["arguments"] += part.function.arguments
        finish = choice.finish_reason or finish
    return "".join(text), [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_two_turn_tool_loop_with_the_openai_sdk(agent, model, stream):
    client, sim, _, _ = agent
    if stream:
        text, calls, finish = collect_stream(
            client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], stream=True)
        )
    else:
        reply = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER])
        message = reply.choices[0].message
        text, finish = message.content or "", reply.choices[0].finish_reason
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in message.tool_calls
        ]
    assert finish == "tool_calls" and text == ""
    (call,) = calls
    assert call["id"].startswith("call_") and call["name"] == "get_weather"
    arguments = json.loads(call["arguments"])
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("C", "F")

    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                },
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"},
    ]
    final = client.chat.completions.create(model=model, messages=history, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert "18 degrees and sunny" in final.choices[0].message.content
    assert final.choices[0].message.tool_calls is None
    assert sim.stats()["tool_result_answers"] >= 1


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_and_named_are_honoured(agent, stream):
    client, _, _, _ = agent
    for choice, expected in (
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ):
        kwargs = {"model": "qwen", "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": choice}
        if stream:
            _, calls, finish = collect_stream(client.chat.completions.create(stream=True, **kwargs))
        else:
            reply = client.chat.completions.create(**kwargs)
            finish = reply.choices[0].finish_reason
            calls = [{"name": c.function.name} for c in reply.choices[0].message.tool_calls]
        assert finish == "tool_calls"
        assert [c["name"] for c in calls] == [expected]


def test_a_model_that_answers_text_when_a_call_is_required_is_asked_again_once(agent):
    client, sim, _, _ = agent
    sim.configure(tool_mode="text", fault_count=1)
    reply = client.chat.completions.create(
        model="qwen", messages=ASK, tools=[WEATHER], tool_choice="required"
    )
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    log = RequestLog.objects.get(request_id=reply._request_id)
    assert log.unbilled_tokens > 0  # the discarded answer: the operator's cost, not the client's
    event = UsageEvent.objects.get(request_id=reply._request_id)
    assert (event.prompt_tokens, event.completion_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_asked_again_is_billed_the_clients_own_prompt(agent, stream):
    """The retry's prompt carries the discarded answer and the correction: the client pays
    the prompt it sent (what the same request costs without a retry), and the rest is
    recorded as unbilled, so a request never costs more than admission reserved for it."""
    client, sim, _, _ = agent
    kwargs = {"model": "qwen", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    plain = client.chat.completions.create(**kwargs)
    sim.configure(tool_mode="text", fault_count=1)
    if stream:
        _, calls, _ = collect_stream(client.chat.completions.create(stream=True, **kwargs))
        assert [c["name"] for c in calls] == ["get_weather"]
        log = eventually(lambda: RequestLog.objects.filter(streamed=True).first())
    else:
        retried = client.chat.completions.create(**kwargs)
        assert retried.usage.prompt_tokens == plain.usage.prompt_tokens
        log = RequestLog.objects.get(request_id=retried._request_id)
    assert log.prompt_tokens == plain.usage.prompt_tokens
    event = UsageEvent.objects.get(request_id=log.request_id)
    assert event.prompt_tokens == plain.usage.prompt_tokens
    # the discarded answer (its prompt and completion) and what the retry added to the prompt
    assert log.unbilled_tokens > plain.usage.prompt_tokens + 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_that_keeps_breaking_the_schema_gets_a_clear_error_and_no_bill(agent, stream):
    client, sim, _, _ = agent
    sim.configure(tool_mode="invalid_args", fault_count=2)
    kwargs = {"model": "qwen", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    if stream:
        with pytest.raises(openai.APIError) as info:
            collect_stream(client.chat.completions.create(stream=True, **kwargs))
        assert "invalid_model_output" in str(info.value.body) or "could not be used" in str(
            info.value
        )
    else:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(**kwargs)
        assert info.value.status_code == 502 and info.value.code == "invalid_model_output"
        assert "get_weather" in info.value.message
    log = eventually(lambda: RequestLog.objects.filter(error_code="invalid_model_output").first())
    assert log is not None and log.unbilled_tokens > 0
    assert not UsageEvent.objects.filter(request_id=log.request_id).exists()


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    tags: list[str]


@pytest.mark.parametrize("model", MODELS)
def test_structured_outputs_with_chat_completions_parse(agent, model):
    client, sim, _, _ = agent
    parsed = client.chat.completions.parse(model=model, messages=ASK, response_format=Weather)
    weather = parsed.choices[0].message.parsed
    assert isinstance(weather, Weather)
    sim.configure(json_mode="fenced")  # fences are stripped
    assert isinstance(
        client.chat.completions.parse(model=model, messages=ASK, response_format=Weather)
        .choices[0]
        .message.parsed,
        Weather,
    )


def test_json_object_mode_and_one_retry_of_invalid_json(agent):
    client, sim, _, _ = agent
    sim.configure(json_mode="invalid_json", fault_count=1)
    reply = client.chat.completions.create(
        model="qwen", messages=ASK, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    streamed, _, _ = collect_stream(
        client.chat.completions.create(
            model="qwen", messages=ASK, response_format={"type": "json_object"}, stream=True
        )
    )
    assert isinstance(json.loads(streamed), dict)


def test_refused_parameters_say_which_and_cost_nothing(agent):
    client, _, _, _ = agent
    for extra, param in (
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2, "logprobs": True}, "logprobs"),
        ({"seed": 3}, "seed"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="qwen", messages=ASK, **extra)
        assert info.value.code == "unsupported_parameter" and info.value.param == param
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_use_round_trip_with_the_anthropic_sdk(agent, stream):
    import anthropic

    _, _, server, demo = agent
    client = anthropic.Anthropic(
        base_url=server.url, api_key=demo.api_key, max_retries=0, timeout=20
    )
    tools = [
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    kwargs = {"model": "qwen", "max_tokens": 200, "messages": ASK, "tools": tools}
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    (use,) = [block for block in message.content if block.type == "tool_use"]
    assert (
        use.id.startswith("toolu_")
        and use.name == "get_weather"
        and set(use.input) == {"city", "unit"}
    )

    raw = client.messages.with_raw_response.create(
        **{
            **kwargs,
            "messages": [
                *ASK,
                {
                    "role": "assistant",
                    "content": [block.model_dump(exclude_none=True) for block in message.content],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}
                    ],
                },
            ],
        }
    )
    final = raw.parse()
    assert final.stop_reason == "end_turn" and "18 degrees" in final.content[0].text
    usage = UsageEvent.objects.get(request_id=raw.headers["x-request-id"])
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )


def test_langchain_binds_tools_and_gets_structured_output(agent):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    _, _, server, demo = agent
    llm = ChatOpenAI(
        model="qwen", base_url=f"{server.url}/v1", api_key=demo.api_key, max_retries=0, timeout=20
    )

    def get_weather(city: str, unit: str) -> str:
        """The weather in a city, in unit C or F."""
        return f"18 {unit} in {city}"

    bound = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    first = bound.invoke([question])
    (call,) = first.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) == {"city", "unit"}
    final = bound.invoke(
        [question, first, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    )
    assert not final.tool_calls and "18" in final.content

    for method in ("json_schema", "function_calling"):
        weather = llm.with_structured_output(Weather, method=method).invoke("Weather in Paris?")
        assert isinstance(weather, Weather), method


def test_what_agent_clients_were_told_is_what_the_ledger_bills(agent):
    """Tool calls billed like text, a retried answer billed once (only the answer the client
    got), streamed calls billed on what was sent: usage events == rollups == ledger."""
    from datetime import timedelta

    from metering.ledger import ledger_post_range
    from metering.models import LedgerEntry, UsageRollup
    from metering.pricing import price_micro_usd
    from metering.rollups import usage_rollup_pending
    from pools.models import Model

    client, sim, _, demo = agent
    told = []  # (model, prompt_tokens, completion_tokens) as each client saw them
    reply = client.chat.completions.create(model="qwen", messages=ASK, tools=[WEATHER])
    told.append(("qwen-3-32b", reply.usage.prompt_tokens, reply.usage.completion_tokens))
    sim.configure(json_mode="invalid_json", fault_count=1)
    reply = client.chat.completions.create(
        model="default", messages=ASK, response_format={"type": "json_object"}
    )
    told.append(("gemma-4-26b", reply.usage.prompt_tokens, reply.usage.completion_tokens))
    for chunk in client.chat.completions.create(
        model="qwen",
        messages=ASK,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage:
            told.append(("qwen-3-32b", chunk.usage.prompt_tokens, chunk.usage.completion_tokens))
    assert len(told) == 3
    assert eventually(lambda: UsageEvent.objects.count() == 3)

    events = sorted(
        (e.model_name, e.prompt_tokens, e.completion_tokens) for e in UsageEvent.objects.all()
    )
    assert events == sorted(told)
    prices = {
        m.name: (m.input_price_per_mtok, m.output_price_per_mtok) for m in Model.objects.all()
    }
    owed = sum(
        price_micro_usd(
            prompt_tokens=p,
            completion_tokens=c,
            input_per_mtok=prices[m][0],
            output_per_mtok=prices[m][1],
        )
        for m, p, c in told
    )
    assert sum(UsageEvent.objects.values_list("cost", flat=True)) == owed
    assert (
        RequestLog.objects.filter(unbilled_tokens__gt=0).count() == 1
    )  # the discarded JSON answer

    now = timezone.now() + timedelta(hours=2)
    usage_rollup_pending(now=now)
    ledger_post_range(
        org_id=None, start=now - timedelta(days=1), end=now, now=now, lag=timedelta(0)
    )
    rolled = UsageRollup.objects.filter(granularity="hour").values_list("cost", flat=True)
    assert sum(rolled) == owed
    assert (
        sum(LedgerEntry.objects.filter(org_id=demo.org_id).values_list("amount", flat=True)) == owed
    )
