"""Request validation: every bad body is a 400 naming the field; good bodies normalize."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.messages_request import parse_messages
from gateway.validation import (
    InferenceRequest,
    parse_chat,
    parse_completion,
    parse_json_body,
)
from portal.errors import PortalError

USER = {"role": "user", "content": "hi"}
TEXT_A = {"type": "text", "text": "A"}
TEXT_B = {"type": "text", "text": "B"}


def chat(**fields) -> dict:
    return {"model": "llama-3-8b", "messages": [USER], **fields}


def completion(**fields) -> dict:
    return {"model": "llama-3-8b", "prompt": "Once upon", **fields}


def anthropic(**fields) -> dict:
    return {"model": "llama-3-8b", "max_tokens": 64, "messages": [USER], **fields}


def user_parts(*parts) -> dict:
    return {"role": "user", "content": list(parts)}


def without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


def assert_invalid(parse, body, param):
    with pytest.raises(PortalError) as caught:
        parse(body)
    error = caught.value
    assert (error.code, error.status) == ("invalid_request_error", 400)
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.message and error.message != "The request is invalid."


# -- OpenAI chat -------------------------------------------------------------------------

BAD_CHAT = [
    ([], None),
    ("hello", None),
    (None, None),
    (without(chat(), "model"), "model"),
    (chat(model=""), "model"),
    (chat(model="   "), "model"),
    (chat(model=7), "model"),
    (chat(model=["a"]), "model"),
    (chat(model="m" * 300), "model"),
    (without(chat(), "messages"), "messages"),
    (chat(messages=[]), "messages"),
    (chat(messages="hi"), "messages"),
    (chat(messages={"role": "user", "content": "hi"}), "messages"),
    (chat(messages=["hi"]), "messages[0]"),
    (chat(messages=[USER, None]), "messages[1]"),
    (chat(messages=[{"content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    (chat(messages=[USER, {"role": "tool", "content": "42"}]), "messages[1].tool_call_id"),
    (chat(messages=[{"role": "User", "content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": 1, "content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": "user"}]), "messages[0].content"),
    (chat(messages=[{"role": "assistant", "content": None}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": {"type": "text"}}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": ["hi"]}]), "messages[0].content[0]"),
    (
        chat(
            messages=[
                USER,
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                },
            ]
        ),
        "messages[1].content[1].type",
    ),
    (chat(messages=[user_parts({"text": "no type"})]), "messages[0].content[0].type"),
    (chat(messages=[user_parts({"type": "text"})]), "messages[0].content[0].text"),
    (chat(messages=[user_parts({"type": "text", "text": 3})]), "messages[0].content[0].text"),
    (chat(n=0), "n"),
    (chat(n=True), "n"),
    (chat(n="1"), "n"),
    (chat(temperature=2.5), "temperature"),
    (chat(temperature=-0.1), "temperature"),
    (chat(temperature="0.7"), "temperature"),
    (chat(temperature=True), "temperature"),
    (chat(temperature=float("nan")), "temperature"),
    (chat(temperature=float("inf")), "temperature"),
    (chat(top_p=1.5), "top_p"),
    (chat(top_p=float("-inf")), "top_p"),
    (chat(top_p=[0.5]), "top_p"),
    (chat(presence_penalty=2.01), "presence_penalty"),
    (chat(presence_penalty=10**400), "presence_penalty"),
    (chat(frequency_penalty=-3), "frequency_penalty"),
    (chat(frequency_penalty=False), "frequency_penalty"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_tokens=-5), "max_tokens"),
    (chat(max_tokens=1.5), "max_tokens"),
    (chat(max_tokens=100.0), "max_tokens"),
    (chat(max_tokens="100"), "max_tokens"),
    (chat(max_tokens=True), "max_tokens"),
    (chat(max_tokens=1_000_001), "max_tokens"),
    (chat(max_tokens=10**30), "max_tokens"),
    (chat(max_completion_tokens=0), "max_completion_tokens"),
    (chat(max_completion_tokens=2_000_000), "max_completion_tokens"),
    (chat(max_tokens=10, max_completion_tokens="x"), "max_completion_tokens"),
    (chat(top_k=-1), "top_k"),
    (chat(top_k=2.0), "top_k"),
    (chat(stream="true"), "stream"),
    (chat(stream=1), "stream"),
    (chat(stream=True, stream_options=True), "stream_options"),
    (chat(stream=True, stream_options=["include_usage"]), "stream_options"),
    (chat(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (chat(stream=True, stream_options={"include_usage": 1}), "stream_options.include_usage"),
    (chat(stop=5), "stop"),
    (chat(stop={"seq": "x"}), "stop"),
    (chat(stop=""), "stop"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stop=["a", 1]), "stop[1]"),
    (chat(stop=["a", ""]), "stop[1]"),
    (chat(stop=[None]), "stop[0]"),
    (chat(user=42), "user"),
    (chat(user={"id": "u"}), "user"),
]


@pytest.mark.parametrize(("body", "param"), BAD_CHAT)
def test_bad_chat_body_is_400_naming_the_field(body, param):
    assert_invalid(parse_chat, body, param)


def test_chat_normalizes_messages_and_reads_every_field():
    body = chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [TEXT_A, TEXT_B]},
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "assistant", "content": "hello", "refusal": None},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
        max_tokens=100,
        temperature=0,
        top_p=1,
        top_k=40,
        presence_penalty=-2,
        frequency_penalty=1.5,
        stop="\n\n",
        stream=True,
        stream_options={"include_usage": True},
        user="end-user-1",
        n=1,
        seed=None,
        logit_bias=None,
        tools=None,
        logprobs=False,
    )

    req = parse_chat(body)

    assert req == InferenceRequest(
        kind="chat",
        model="llama-3-8b",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "A\nB"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        max_tokens=100,
        temperature=0.0,
        top_p=1.0,
        top_k=40,
        presence_penalty=-2.0,
        frequency_penalty=1.5,
        stop=["\n\n"],
        stream=True,
        include_usage=True,
        user="end-user-1",
        raw=body,
    )
    assert req.raw is body
    assert type(req.temperature) is float


def test_chat_defaults_when_only_required_fields_are_sent():
    req = parse_chat(chat())

    assert (req.max_tokens, req.temperature, req.top_p, req.top_k) == (None, None, None, None)
    assert (req.stop, req.stream, req.include_usage, req.user) == ([], False, False, None)
    assert req.messages == [USER]


def test_chat_nulls_mean_defaults():
    nulls = dict.fromkeys(["temperature", "max_tokens", "stop", "stream", "n", "user"])

    req = parse_chat(chat(**nulls))

    assert (req.temperature, req.max_tokens, req.stop, req.stream) == (None, None, [], False)


def test_max_completion_tokens_is_accepted_and_wins_over_max_tokens():
    assert parse_chat(chat(max_completion_tokens=50)).max_tokens == 50
    assert parse_chat(chat(max_tokens=500, max_completion_tokens=50)).max_tokens == 50
    assert parse_chat(chat(max_tokens=1_000_000)).max_tokens == 1_000_000


def test_include_usage_only_counts_when_streaming():
    assert parse_chat(chat(stream_options={"include_usage": True})).include_usage is False
    assert parse_chat(chat(stream=True, stream_options={})).include_usage is False


def test_stop_list_is_kept_as_sent():
    assert parse_chat(chat(stop=["a", "b", "c", "d"])).stop == ["a", "b", "c", "d"]


# -- OpenAI completions ------------------------------------------------------------------

BAD_COMPLETION = [
    ("prompt", None),
    (without(completion(), "model"), "model"),
    (completion(model=None), "model"),
    (without(completion(), "prompt"), "prompt"),
    (completion(prompt=None), "prompt"),
    (completion(prompt=12), "prompt"),
    (completion(prompt={"text": "x"}), "prompt"),
    (completion(prompt=[]), "prompt"),
    (completion(prompt=["a", "b"]), "prompt"),
    (completion(prompt=[1, 2, 3]), "prompt"),
    (completion(prompt=[[1, 2], [3]]), "prompt"),
    (completion(prompt=[None]), "prompt"),
    (completion(max_tokens=0), "max_tokens"),
    (completion(max_tokens=5_000_000), "max_tokens"),
    (completion(temperature=3), "temperature"),
    (completion(top_p=-0.5), "top_p"),
    (completion(frequency_penalty="high"), "frequency_penalty"),
    (completion(stream="no"), "stream"),
    (completion(stream=True, stream_options="usage"), "stream_options"),
    (completion(stop=[1]), "stop[0]"),
    (completion(user=1.5), "user"),
]


@pytest.mark.parametrize(("body", "param"), BAD_COMPLETION)
def test_bad_completion_body_is_400_naming_the_field(body, param):
    assert_invalid(parse_completion, body, param)


@pytest.mark.parametrize("prompt", ["Once upon", ["Once upon"], ""])
def test_completion_prompt_is_a_string_or_a_list_of_one(prompt):
    body = completion(
        prompt=prompt,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        echo=False,
        suffix=None,
    )

    req = parse_completion(body)

    assert req.kind == "completion"
    assert req.prompt == (prompt[0] if isinstance(prompt, list) else prompt)
    assert (req.max_tokens, req.stream, req.include_usage, req.messages) == (16, True, True, [])


def test_token_id_prompt_says_why():
    with pytest.raises(PortalError, match="token id"):
        parse_completion(completion(prompt=[1, 2]))


def test_n_error_says_only_one_is_supported():
    with pytest.raises(PortalError, match="only n=1 is supported"):
        parse_chat(chat(n=2))


# -- Anthropic messages ------------------------------------------------------------------

BAD_ANTHROPIC = [
    (42, None),
    (without(anthropic(), "model"), "model"),
    (anthropic(model=""), "model"),
    (without(anthropic(), "max_tokens"), "max_tokens"),
    (anthropic(max_tokens=None), "max_tokens"),
    (anthropic(max_tokens=0), "max_tokens"),
    (anthropic(max_tokens="64"), "max_tokens"),
    (anthropic(max_tokens=64.0), "max_tokens"),
    (anthropic(max_tokens=1_000_001), "max_tokens"),
    (without(anthropic(), "messages"), "messages"),
    (anthropic(messages=[]), "messages"),
    (anthropic(messages="hi"), "messages"),
    (anthropic(messages=[{"role": "system", "content": "be nice"}]), "messages[0].role"),
    (anthropic(messages=[USER, {"role": "developer", "content": "x"}]), "messages[1].role"),
    (anthropic(messages=[{"role": "user", "content": 1}]), "messages[0].content"),
    (
        anthropic(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        },
                    ],
                }
            ]
        ),
        "messages[0].content[0].type",
    ),
    (
        anthropic(
            messages=[
                USER,
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    ],
                },
            ]
        ),
        "messages[1].content[0].type",
    ),
    (
        anthropic(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "f", "input": []},
                    ],
                },
            ]
        ),
        "messages[1].content[0].input",
    ),
    (anthropic(system=5), "system"),
    (anthropic(system={"type": "text", "text": "x"}), "system"),
    (anthropic(system=[{"type": "text", "text": 5}]), "system[0].text"),
    (anthropic(system=[{"type": "image"}]), "system[0].type"),
    (anthropic(temperature=1.5), "temperature"),
    (anthropic(temperature=float("nan")), "temperature"),
    (anthropic(top_p=2), "top_p"),
    (anthropic(top_k=-1), "top_k"),
    (anthropic(top_k=0.5), "top_k"),
    (anthropic(stop_sequences="END"), "stop_sequences"),
    (anthropic(stop_sequences=["END", 3]), "stop_sequences[1]"),
    (anthropic(stop_sequences=["s"] * 17), "stop_sequences"),
    (anthropic(stream="yes"), "stream"),
    (anthropic(metadata="u1"), "metadata"),
    (anthropic(metadata={"user_id": 7}), "metadata.user_id"),
]


@pytest.mark.parametrize(("body", "param"), BAD_ANTHROPIC)
def test_bad_anthropic_body_is_400_naming_the_field(body, param):
    assert_invalid(parse_messages, body, param)


def test_anthropic_system_role_error_points_at_the_system_field():
    with pytest.raises(PortalError, match="top-level system"):
        parse_messages(anthropic(messages=[{"role": "system", "content": "x"}]))


def test_anthropic_body_normalizes():
    body = anthropic(
        system=[
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in English."},
        ],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
            {"role": "assistant", "content": "Blue"},
            {"role": "user", "content": "Another."},
        ],
        temperature=1,
        top_p=0.9,
        top_k=0,
        stop_sequences=["\n\nHuman:"],
        stream=True,
        metadata={"user_id": "u-1"},
        thinking=None,
    )

    req = parse_messages(body)

    assert req.kind == "messages"
    assert req.system == "You are terse.\nAnswer in English."
    assert req.messages == [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue"},
        {"role": "user", "content": "Another."},
    ]
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k) == (64, 1.0, 0.9, 0)
    assert (req.stop, req.stream, req.user) == (["\n\nHuman:"], True, "u-1")
    assert req.include_usage is False
    assert req.raw is body


@pytest.mark.parametrize("system", [None, "", []])
def test_anthropic_missing_system_is_empty(system):
    assert parse_messages(anthropic(system=system)).system == ""


# -- JSON bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"{'model': 'x'}",
        b'{"temperature": NaN}',
        b'{"temperature": Infinity}',
        b'{"temperature": -Infinity}',
        b'{"model": "\xff"}',
        '{"model": "é"}'.encode("latin-1"),
        '{"model": "x"}'.encode("utf-16"),
        b"\xef\xbb\xbf{}",
        b"[" * 100_000,
        b'{"max_tokens": ' + b"9" * 5000 + b"}",
    ],
)
def test_bad_json_is_invalid_json(raw):
    with pytest.raises(PortalError) as caught:
        parse_json_body(raw)

    error = caught.value
    assert (error.code, error.status, error.param) == ("invalid_json", 400, None)


def test_json_body_decodes_utf8():
    assert parse_json_body('{"model": "é", "x": [1, 2.5, null, true]}'.encode()) == {
        "model": "é",
        "x": [1, 2.5, None, True],
    }
    assert parse_json_body(bytearray(b"[]")) == []


def test_overflowing_float_literal_is_caught_by_field_validation():
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 1e999}'

    body = parse_json_body(raw)

    assert_invalid(parse_chat, body, "top_p")


# -- robustness --------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "model",
    "messages",
    "prompt",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "stop_sequences",
    "stream",
    "stream_options",
    "user",
    "system",
    "metadata",
    "presence_penalty",
    "frequency_penalty",
]
PARSERS = [(parse_chat, chat), (parse_completion, completion), (parse_messages, anthropic)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(FIELDS),
    value=JSON_VALUES,
    parser=st.sampled_from(PARSERS),
)
def test_any_json_value_in_any_field_parses_or_is_a_400(field, value, parser):
    parse, make = parser
    try:
        req = parse(make(**{field: value}))
    except PortalError as error:
        assert error.code in ("invalid_request_error", "unsupported_parameter")
        return
    json.dumps([{k: v for k, v in m.items() if k != "tool_calls"} for m in req.messages])
    assert all(isinstance(m["content"], str) for m in req.messages)
