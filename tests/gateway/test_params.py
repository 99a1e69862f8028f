"""Every request field is honoured or refused with 400 `unsupported_parameter` naming it;
neutral values (null, false, the one value there is) pass."""

from __future__ import annotations

import pytest

from gateway.messages_request import parse_messages
from gateway.validation import parse_chat, parse_completion
from portal.errors import PortalError

USER = [{"role": "user", "content": "hi"}]


def chat(**fields):
    return parse_chat({"model": "m", "messages": USER, **fields})


def completion(**fields):
    return parse_completion({"model": "m", "prompt": "Once", **fields})


def messages(**fields):
    return parse_messages({"model": "m", "max_tokens": 10, "messages": USER, **fields})


REFUSED = [
    (chat, {"n": 2}, "n"),
    (completion, {"n": 3}, "n"),
    (chat, {"logprobs": True}, "logprobs"),
    (chat, {"top_logprobs": 3}, "top_logprobs"),
    (chat, {"seed": 1}, "seed"),
    (chat, {"logit_bias": {"50256": -100}}, "logit_bias"),
    (chat, {"store": True}, "store"),
    (chat, {"service_tier": "flex"}, "service_tier"),
    (chat, {"modalities": ["text", "audio"]}, "modalities"),
    (chat, {"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    (chat, {"prediction": {"type": "content", "content": "x"}}, "prediction"),
    (chat, {"reasoning_effort": "high"}, "reasoning_effort"),
    (chat, {"functions": [{"name": "f"}]}, "functions"),
    (chat, {"frobnicate": 1}, "frobnicate"),
    (completion, {"logprobs": 5}, "logprobs"),
    (completion, {"echo": True}, "echo"),
    (completion, {"best_of": 3}, "best_of"),
    (completion, {"suffix": "end"}, "suffix"),
    (messages, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    (messages, {"mcp_servers": [{"type": "url", "url": "https://x"}]}, "mcp_servers"),
    (messages, {"frobnicate": 1}, "frobnicate"),
    (chat, {"tools": [{"type": "web_search"}]}, "tools[0].type"),
    (messages, {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    (chat, {"messages": [{"role": "function", "name": "f", "content": "1"}]}, "messages[0].role"),
]


@pytest.mark.parametrize(("parse", "fields", "param"), REFUSED)
def test_a_field_that_cannot_be_honoured_is_refused_by_name(parse, fields, param):
    with pytest.raises(PortalError) as caught:
        parse(**fields)
    err = caught.value
    assert (err.code, err.status, err.type, err.param) == (
        "unsupported_parameter",
        400,
        "invalid_request_error",
        param,
    )
    assert param.split(".")[0].split("[")[0] in err.message


@pytest.mark.parametrize(
    ("parse", "fields"),
    [
        (
            chat,
            {
                "logprobs": False,
                "top_logprobs": None,
                "seed": None,
                "store": False,
                "logit_bias": {},
                "service_tier": "auto",
                "modalities": ["text"],
                "metadata": {"a": "b"},
                "user": "u",
                "parallel_tool_calls": True,
                "prompt_cache_key": "k",
            },
        ),
        (completion, {"logprobs": 0, "echo": False, "best_of": 1, "suffix": None}),
        (
            messages,
            {
                "thinking": {"type": "disabled"},
                "service_tier": "auto",
                "metadata": {"user_id": "u"},
            },
        ),
    ],
)
def test_neutral_values_pass(parse, fields):
    parse(**fields)


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tool_choice": "required"}, "tool_choice", "only allowed when tools are specified"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
            "must name one of the tools",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
            "letters",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "objekt"}},
                    }
                ]
            },
            "tools[0].function.parameters",
            "not a valid JSON Schema",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}] * 2},
            "tools[1]",
            "two tools named",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": 5}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON Schema",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "json_object"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content", "required"),
    ],
)
def test_bad_tools_and_formats_are_400_naming_the_field(fields, param, words):
    with pytest.raises(PortalError) as caught:
        chat(**fields)
    assert caught.value.param == param and words in caught.value.message


def test_a_tool_loop_history_is_read_into_the_conversation():
    req = chat(
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]},
        ],
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="none",
    )
    assert req.messages[1]["tool_calls"][0].name == "f" and req.messages[1]["content"] == ""
    assert req.messages[2] == {"role": "tool", "content": "42", "tool_call_id": "call_1"}
    assert req.tool_choice.mode == "none" and not req.offers_tools


def test_anthropic_tool_use_and_results_become_the_same_conversation():
    req = messages(
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "no"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert (
        req.messages[1]["content"] == "Checking."
        and req.messages[1]["tool_calls"][0].arguments == '{"a":1}'
    )
    assert req.messages[2:] == [
        {"role": "tool", "content": "42", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "Error: no", "tool_call_id": "toolu_2"},
        {"role": "user", "content": "Thanks"},
    ]
    assert req.tool_choice.mode == "required" and req.parallel_tool_calls is False


def test_json_mode_with_a_schema_is_honoured_as_a_schema():
    """vLLM / Together style (instructor's JSON_SCHEMA mode): the schema is not dropped."""
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    req = chat(response_format={"type": "json_object", "schema": schema})
    assert (req.output.kind, req.output.schema, req.output.strict) == ("json_schema", schema, True)
