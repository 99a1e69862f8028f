"""`POST /v1/responses` bodies parsed into the one conversation, and the `response`
objects and event streams the openai SDK reads back."""

from __future__ import annotations

import json

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from gateway import responses
from gateway.conversation import OutputFormat, Tool, ToolCall, ToolChoice
from gateway.protocols import Answer
from gateway.responses_input import parse_responses
from portal.errors import PortalError

REQUEST_ID = "req_abcdefghijklmnopqrstuvwx"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}


def parse(**fields):
    return parse_responses({"model": "qwen", "input": "hi", **fields})


def refused(code: str, param: str, **fields) -> PortalError:
    with pytest.raises(PortalError) as caught:
        parse(**fields)
    assert (caught.value.code, caught.value.status, caught.value.param) == (code, 400, param)
    return caught.value


# -- parsing -----------------------------------------------------------------------------


def test_a_string_input_with_instructions_and_settings():
    req = parse(
        instructions="Be terse.",
        max_output_tokens=64,
        temperature=0.2,
        top_p=0.9,
        user="u-1",
        stream=True,
    )
    assert req.messages == [{"role": "user", "content": "hi"}]
    assert (req.system, req.max_tokens, req.temperature, req.top_p, req.user, req.stream) == (
        "Be terse.",
        64,
        0.2,
        0.9,
        "u-1",
        True,
    )
    assert req.kind == "responses" and req.tools == [] and req.output is None


def test_message_items_in_every_role_and_part_type():
    req = parse(
        input=[
            {"role": "developer", "content": "Rules."},
            {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "More rules."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "A"},
                    {"type": "input_text", "text": "B"},
                ],
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Earlier answer.", "annotations": []}],
            },
        ]
    )
    assert req.messages == [
        {"role": "system", "content": "Rules."},
        {"role": "system", "content": "More rules."},
        {"role": "user", "content": "A\nB"},
        {"role": "assistant", "content": "Earlier answer."},
    ]


def test_function_calls_join_one_assistant_message_and_outputs_become_tool_messages():
    req = parse(
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "21 C"}],
            },
            {
                "type": "function_call",
                "call_id": "call_3",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
        ],
    )
    assert req.messages == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                ToolCall(id="call_2", name="get_weather", arguments='{"city":"Rome"}'),
            ],
        },
        {"role": "tool", "content": "18 C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "21 C", "tool_call_id": "call_2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                ToolCall(id="call_3", name="get_weather", arguments='{"city":"Oslo"}'),
            ],
        },
    ]


def test_flat_tools_tool_choice_and_text_format():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    req = parse(
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert req.tools == [
        Tool(
            name="get_weather",
            description="The weather in a city.",
            parameters=WEATHER["parameters"],
            strict=True,
        )
    ]
    assert req.tool_choice == ToolChoice(mode="function", name="get_weather")
    assert req.parallel_tool_calls is False
    assert req.output == OutputFormat(kind="json_schema", schema=schema, name="city", strict=True)
    assert parse(text={"format": {"type": "json_object"}}).output == OutputFormat(
        kind="json_object"
    )


def test_store_metadata_and_cache_hints_are_accepted():
    req = parse(
        store=True,
        metadata={"team": "a"},
        prompt_cache_key="k",
        safety_identifier="s",
        previous_response_id=None,
    )
    assert req.raw["metadata"] == {"team": "a"}


def test_previous_response_id_is_refused_because_nothing_is_stored():
    error = refused(
        "unsupported_parameter", "previous_response_id", previous_response_id="resp_123"
    )
    assert "not stored" in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"conversation": "conv_1"}, "conversation"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"background": True}, "background"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "https://x/y.png"},
                        ],
                    }
                ]
            },
            "input[0].content[1].type",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_file", "file_id": "f"}],
                    }
                ]
            },
            "input[0].output[0].type",
        ),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_it(fields, param):
    refused("unsupported_parameter", param, **fields)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": 3}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": [{"content": "hi"}]}, "input[0].role"),
        ({"input": [{"role": "tool", "content": "hi"}]}, "input[0].role"),
        ({"input": [{"role": "user"}]}, "input[0].content"),
        (
            {"input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input[0].arguments",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"input": [{"type": "banana"}]}, "input[0].type"),
        ({"instructions": ["x"]}, "instructions"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"store": "yes"}, "store"),
        ({"metadata": {"n": 1}}, "metadata"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(fields, param):
    refused("invalid_request_error", param, **fields)


# -- answers -----------------------------------------------------------------------------

CALL = ToolCall(id="call_XYZ", name="get_weather", arguments='{"city":"Paris"}')


def answer(text="Hello.", *, finish="stop", calls=()):
    return Answer(
        text=text, finish=finish, prompt_tokens=11, completion_tokens=5, tool_calls=list(calls)
    )


def whole(req, ans) -> Response:
    body = responses.RESPONSES.whole(
        request_id=REQUEST_ID,
        model="qwen",
        created=1_700_000_000,
        answer=ans,
        router_body={},
        req=req,
    )
    return Response.model_validate(json.loads(json.dumps(body)))


def test_a_whole_answer_is_a_response_the_sdk_validates():
    response = whole(parse(instructions="Be terse.", metadata={"team": "a"}), answer())
    assert response.id == "resp_abcdefghijklmnopqrstuvwx" and response.status == "completed"
    assert (
        response.output_text == "Hello." and response.output[0].id == "msg_abcdefghijklmnopqrstuvwx"
    )
    assert (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.total_tokens,
    ) == (11, 5, 16)
    assert response.instructions == "Be terse." and response.metadata == {"team": "a"}
    assert response.error is None and response.incomplete_details is None


def test_calls_follow_the_text_as_function_call_items():
    response = whole(parse(tools=[WEATHER]), answer("", finish="tool_calls", calls=[CALL]))
    (item,) = response.output
    assert (item.type, item.id, item.call_id, item.name, item.arguments, item.status) == (
        "function_call",
        "fc_XYZ",
        "call_XYZ",
        "get_weather",
        '{"city":"Paris"}',
        "completed",
    )
    assert response.tools[0].name == "get_weather" and response.tool_choice == "auto"


def test_an_answer_cut_by_max_output_tokens_is_incomplete():
    response = whole(parse(max_output_tokens=5), answer(finish="length"))
    assert (
        response.status == "incomplete"
        and response.incomplete_details.reason == "max_output_tokens"
    )
    assert response.max_output_tokens == 5


# -- streams -----------------------------------------------------------------------------


def events(emitted: list[bytes]) -> list[dict]:
    out = []
    for raw in emitted:
        head, data = raw.decode().rstrip("\n").split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        out.append(event)
    return out


def stream(req, *steps, ans):
    emitter = responses.ResponsesEmitter(
        responses.RESPONSES, request_id=REQUEST_ID, model="qwen", created=1
    )
    sent = [*emitter.opening(req=req, prompt_tokens=11)]
    for kind, value in steps:
        sent += getattr(emitter, kind)(value)
    sent += emitter.closing(req=req, answer=ans)
    return events(sent)


def sdk_final(evs: list[dict]):
    """What `client.responses.stream(...).get_final_response()` makes of the events."""
    state = ResponseStreamState(input_tools=[WEATHER], text_format=omit)
    for event in evs:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))
    return state._completed_response


def test_a_text_stream_in_order_with_sequence_numbers():
    evs = stream(parse(), ("text", "Hel"), ("text", "lo."), ans=answer())
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[6]["text"] == "Hello."
    final = sdk_final(evs)
    assert final.output_text == "Hello." and final.usage.total_tokens == 16


def test_text_then_calls_stream_as_separate_items():
    evs = stream(
        parse(tools=[WEATHER]),
        ("text", "Checking."),
        ("calls", [CALL]),
        ans=answer("Checking.", calls=[CALL]),
    )
    kinds = [e["type"] for e in evs]
    assert kinds[kinds.index("response.output_item.done") + 1 :] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = evs[kinds.index("response.function_call_arguments.delta") - 1]
    assert added["output_index"] == 1 and added["item"]["arguments"] == ""
    final = sdk_final(evs)
    assert final.output_text == "Checking."
    assert final.output[1].call_id == "call_XYZ" and final.output[1].parsed_arguments == {
        "city": "Paris"
    }


def test_an_empty_answer_is_one_empty_message_and_a_cut_one_ends_incomplete():
    evs = stream(parse(), ans=answer("", finish="length"))
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["output"][0]["content"][0]["text"] == ""
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_ends_with_response_failed_and_what_was_sent():
    req = parse()
    emitter = responses.ResponsesEmitter(
        responses.RESPONSES, request_id=REQUEST_ID, model="qwen", created=1
    )
    sent = [*emitter.opening(req=req, prompt_tokens=1), *emitter.text("Hel")]
    sent += emitter.failure(
        message="The model backend failed.", code="upstream_error", type_="api_error"
    )
    last = events(sent)[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"] == {
        "code": "upstream_error",
        "message": "The model backend failed.",
    }
    assert last["response"]["output"][0]["content"][0]["text"] == "Hel"
