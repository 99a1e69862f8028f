"""OpenAI shapes: what we emit must parse with the official `openai` SDK, strictly and over SSE."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway import sse
from gateway.openai_format import (
    chat_chunk,
    chat_chunk_id,
    chat_completion,
    chat_first_chunk,
    chat_usage_chunk,
    completion_chunk,
    completion_chunk_id,
    completion_usage_chunk,
    extract_finish,
    extract_text,
    extract_usage,
    text_completion,
    usage_dict,
)

REQUEST_ID = "req_01JD8X3Y4Z5W6V7U8T9S0R1Q2P"
ROUTER_BODY = {
    "id": "router-cmpl-99",
    "object": "text_completion",
    "created": 1730000000,
    "model": "router-internal-gemma-3-27b-q4",
    "choices": [{"index": 0, "text": "Four.", "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
}


def router_body(**choice) -> dict:
    return {**ROUTER_BODY, "choices": [{**ROUTER_BODY["choices"][0], **choice}]}


def test_usage_dict_totals():
    assert usage_dict(12, 34) == {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}


def test_chat_completion_parses_with_the_sdk_and_shows_the_public_model():
    body = chat_completion(
        request_id=REQUEST_ID,
        model="gemma-3-27b",
        router_body=ROUTER_BODY,
        usage=usage_dict(12, 34),
    )

    parsed = ChatCompletion.model_validate(body)

    assert parsed.id == "chatcmpl-01JD8X3Y4Z5W6V7U8T9S0R1Q2P"
    assert parsed.object == "chat.completion"
    assert parsed.created == 1730000000
    assert parsed.model == "gemma-3-27b"
    assert len(parsed.choices) == 1
    choice = parsed.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert (choice.message.role, choice.message.content) == ("assistant", "Four.")
    assert parsed.usage.model_dump(exclude_none=True) == usage_dict(12, 34)
    assert json.loads(json.dumps(body)) == body


def test_text_completion_parses_with_the_sdk():
    body = text_completion(
        request_id=REQUEST_ID,
        model="gemma-3-27b",
        router_body=ROUTER_BODY,
        usage=usage_dict(12, 34),
    )

    parsed = Completion.model_validate(body)

    assert parsed.id == "cmpl-01JD8X3Y4Z5W6V7U8T9S0R1Q2P"
    assert (parsed.object, parsed.model) == ("text_completion", "gemma-3-27b")
    assert parsed.created == 1730000000
    assert (parsed.choices[0].text, parsed.choices[0].finish_reason) == ("Four.", "stop")
    assert parsed.usage.total_tokens == 46


@pytest.mark.parametrize(
    ("router_reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("eos", "stop"),
        ("content_filter", "stop"),
        (None, "stop"),
        (7, "stop"),
    ],
)
@pytest.mark.parametrize("shape", [chat_completion, text_completion])
def test_finish_reason_is_normalized_to_stop_or_length(shape, router_reason, expected):
    body = shape(
        request_id=REQUEST_ID,
        model="m",
        router_body=router_body(finish_reason=router_reason),
        usage=usage_dict(1, 1),
    )

    assert body["choices"][0]["finish_reason"] == expected
    (ChatCompletion if shape is chat_completion else Completion).model_validate(body)


def test_explicit_created_wins_and_a_missing_one_falls_back():
    garbage = {"choices": "nope", "created": "yesterday"}

    explicit = chat_completion(
        request_id=REQUEST_ID,
        model="m",
        router_body=ROUTER_BODY,
        usage=usage_dict(0, 0),
        created=1800000000,
    )
    fallback = chat_completion(
        request_id=REQUEST_ID, model="m", router_body=garbage, usage=usage_dict(0, 0)
    )

    assert explicit["created"] == 1800000000
    assert isinstance(fallback["created"], int) and fallback["created"] > 1_700_000_000
    assert fallback["choices"][0]["message"]["content"] == ""
    ChatCompletion.model_validate(fallback)


# -- router readers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "text"),
    [
        (ROUTER_BODY, "Four."),
        ({"choices": [{"index": 0, "text": "", "finish_reason": None}]}, ""),
        ({"choices": [{"delta": {"content": "Hi"}}]}, "Hi"),
        ({"choices": [{"message": {"role": "assistant", "content": "Hey"}}]}, "Hey"),
        ({"choices": [{"delta": {"role": "assistant"}}]}, ""),
        ({"choices": [{"text": None}]}, ""),
        ({"choices": [{"text": 5}]}, ""),
        ({"choices": []}, ""),
        ({"choices": ["x"]}, ""),
        ({"choices": {"0": {"text": "x"}}}, ""),
        ({}, ""),
        ([], ""),
        (None, ""),
        ("data", ""),
    ],
)
def test_extract_text_never_raises(chunk, text):
    assert extract_text(chunk) == text


@pytest.mark.parametrize(
    ("chunk", "finish"),
    [
        (ROUTER_BODY, "stop"),
        (router_body(finish_reason="length"), "length"),
        (router_body(finish_reason=None), None),
        ({"choices": [{"text": "x"}]}, None),
        ({"choices": []}, None),
        (None, None),
    ],
)
def test_extract_finish(chunk, finish):
    assert extract_finish(chunk) == finish


@pytest.mark.parametrize(
    ("body", "usage"),
    [
        (ROUTER_BODY, (12, 34)),
        ({"usage": {"prompt_tokens": 0, "completion_tokens": 0}}, (0, 0)),
        ({"usage": None}, None),
        ({}, None),
        (None, None),
        ({"usage": "12/34"}, None),
        ({"usage": {"prompt_tokens": 12}}, None),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 3}}, None),
        ({"usage": {"prompt_tokens": 1.5, "completion_tokens": 3}}, None),
        ({"usage": {"prompt_tokens": "12", "completion_tokens": 3}}, None),
        ({"usage": {"prompt_tokens": True, "completion_tokens": 3}}, None),
        ({"usage": {"prompt_tokens": 10**20, "completion_tokens": 3}}, None),
    ],
)
def test_extract_usage_validates(body, usage):
    assert extract_usage(body) == usage


# -- streaming ---------------------------------------------------------------------------

CREATED = 1730000001


def chat_stream(include_usage: bool) -> list[dict]:
    chunk_id = chat_chunk_id(REQUEST_ID)
    common = {"chunk_id": chunk_id, "created": CREATED, "model": "gemma-3-27b"}
    chunks = [
        chat_first_chunk(**common),
        chat_chunk(**common, delta={"content": "Fo"}),
        chat_chunk(**common, delta={"content": "ur. ✓"}),
        chat_chunk(**common, delta={}, finish_reason="length"),
    ]
    if include_usage:
        chunks.append(chat_usage_chunk(**common, usage=usage_dict(12, 3)))
    return chunks


def completion_stream(include_usage: bool) -> list[dict]:
    chunk_id = completion_chunk_id(REQUEST_ID)
    common = {"chunk_id": chunk_id, "created": CREATED, "model": "gemma-3-27b"}
    chunks = [
        completion_chunk(**common, text="Fo"),
        completion_chunk(**common, text="ur."),
        completion_chunk(**common, text="", finish_reason="stop"),
    ]
    if include_usage:
        chunks.append(completion_usage_chunk(**common, usage=usage_dict(12, 3)))
    return chunks


def test_every_chat_chunk_validates_strictly():
    parsed = [ChatCompletionChunk.model_validate(c) for c in chat_stream(include_usage=True)]

    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[0].choices[0].delta.content == ""
    assert {p.id for p in parsed} == {"chatcmpl-01JD8X3Y4Z5W6V7U8T9S0R1Q2P"}
    assert {p.object for p in parsed} == {"chat.completion.chunk"}
    assert parsed[3].choices[0].finish_reason == "length"
    assert parsed[4].choices == [] and parsed[4].usage.total_tokens == 15
    assert all(p.usage is None for p in parsed[:4])


def test_final_and_usage_completion_chunks_validate_strictly():
    chunks = completion_stream(include_usage=True)

    final = Completion.model_validate(chunks[2])
    usage = Completion.model_validate(chunks[3])

    assert final.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage.prompt_tokens == 12
    assert chunks[0]["choices"][0]["finish_reason"] is None  # as OpenAI streams it


def sdk_client(payload: bytes) -> openai.OpenAI:
    def handler(request):
        return httpx2.Response(200, content=payload, headers={"content-type": "text/event-stream"})

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://portal.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


@pytest.mark.parametrize("include_usage", [False, True])
def test_sdk_reads_our_chat_stream(include_usage):
    events = b"".join(sse.data_event(c) for c in chat_stream(include_usage))
    payload = events + sse.KEEPALIVE + sse.DONE
    client = sdk_client(payload)

    chunks = list(
        client.chat.completions.create(
            model="gemma-3-27b",
            messages=[{"role": "user", "content": "2+2?"}],
            stream=True,
            stream_options={"include_usage": include_usage},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Four. ✓"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert (chunks[-1].usage.completion_tokens if include_usage else chunks[-1].usage) == (
        3 if include_usage else None
    )


def test_sdk_reads_our_completion_stream():
    payload = b"".join(sse.data_event(c) for c in completion_stream(True)) + sse.DONE
    client = sdk_client(payload)

    chunks = list(
        client.completions.create(
            model="gemma-3-27b", prompt="2+2=", stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Four."
    assert chunks[-1].usage.total_tokens == 15


def test_sdk_reads_our_non_streaming_chat_completion():
    body = chat_completion(
        request_id=REQUEST_ID,
        model="gemma-3-27b",
        router_body=ROUTER_BODY,
        usage=usage_dict(12, 34),
    )

    def handler(request):
        return httpx2.Response(
            200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://portal.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )

    result = client.chat.completions.create(
        model="gemma-3-27b", messages=[{"role": "user", "content": "x"}]
    )

    assert result.choices[0].message.content == "Four."
    assert result.usage.total_tokens == 46


# -- SSE framing -------------------------------------------------------------------------


def test_data_event_is_compact_utf8_json():
    event = sse.data_event({"a": [1, 2], "t": "é ✓\n"})

    assert event == 'data: {"a":[1,2],"t":"é ✓\\n"}\n\n'.encode()


def test_data_event_survives_lone_surrogates():
    event = sse.data_event({"t": "\ud800x"})

    assert event == b'data: {"t":"\\ud800x"}\n\n'
    assert json.loads(event[6:]) == {"t": "\ud800x"}


def test_done_and_named_events():
    assert sse.DONE == b"data: [DONE]\n\n"
    assert sse.named_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


# -- token estimates (gateway.tokens) ----------------------------------------------------

from gateway.tokens import estimate_tokens  # noqa: E402


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_tokens_is_a_quarter_of_the_characters_rounded_up(text, tokens):
    assert estimate_tokens(text) == tokens
