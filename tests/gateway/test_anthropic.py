"""Anthropic shapes: what we emit must parse with the official `anthropic` SDK."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from anthropic.types.shared import ErrorResponse

from gateway import sse
from gateway.anthropic import (
    anthropic_error_type,
    content_block_start_event,
    content_block_stop_event,
    error_body,
    error_event,
    message_delta_event,
    message_response,
    message_start_event,
    message_stop_event,
    ping_event,
    text_delta_event,
)
from gateway.openai_format import usage_dict
from portal.errors import CATALOG

REQUEST_ID = "req_01JD8X3Y4Z5W6V7U8T9S0R1Q2P"
USER = {"role": "user", "content": "x"}


def test_message_parses_with_the_sdk():
    body = message_response(
        request_id=REQUEST_ID,
        model="gemma-3-27b",
        text="Four.",
        finish_reason="stop",
        usage=usage_dict(12, 3),
    )

    message = Message.model_validate(body)

    assert message.id == "msg_01JD8X3Y4Z5W6V7U8T9S0R1Q2P"
    assert (message.type, message.role, message.model) == ("message", "assistant", "gemma-3-27b")
    assert [(b.type, b.text) for b in message.content] == [("text", "Four.")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)


@pytest.mark.parametrize(
    ("finish_reason", "stop_sequence", "stop_reason"),
    [
        ("stop", None, "end_turn"),
        (None, None, "end_turn"),
        ("weird", None, "end_turn"),
        ("length", None, "max_tokens"),
        ("stop_sequence", None, "stop_sequence"),
        ("stop", "\n\nHuman:", "stop_sequence"),
    ],
)
def test_stop_reason_mapping(finish_reason, stop_sequence, stop_reason):
    body = message_response(
        request_id=REQUEST_ID,
        model="m",
        text="",
        finish_reason=finish_reason,
        usage=usage_dict(1, 0),
        stop_sequence=stop_sequence,
    )

    message = Message.model_validate(body)

    assert (message.stop_reason, message.stop_sequence) == (stop_reason, stop_sequence)
    _, delta = message_delta_event(
        finish_reason=finish_reason, output_tokens=0, stop_sequence=stop_sequence
    )
    assert RawMessageDeltaEvent.model_validate(delta).delta.stop_reason == stop_reason


def stream_events() -> list[tuple[str, dict]]:
    return [
        message_start_event(request_id=REQUEST_ID, model="gemma-3-27b", input_tokens=10),
        content_block_start_event(),
        ping_event(),
        text_delta_event("Fo"),
        text_delta_event("ur. ✓"),
        content_block_stop_event(),
        message_delta_event(finish_reason="length", output_tokens=3, input_tokens=12),
        message_stop_event(),
    ]


EVENT_TYPES = {
    "message_start": RawMessageStartEvent,
    "content_block_start": RawContentBlockStartEvent,
    "content_block_delta": RawContentBlockDeltaEvent,
    "content_block_stop": RawContentBlockStopEvent,
    "message_delta": RawMessageDeltaEvent,
    "message_stop": RawMessageStopEvent,
}


def test_every_stream_event_validates_and_names_match_types():
    events = stream_events()

    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert data["type"] == name
        if name != "ping":
            EVENT_TYPES[name].model_validate(data)
    start = RawMessageStartEvent.model_validate(events[0][1])
    assert start.message.content == [] and start.message.stop_reason is None
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (10, 1)
    assert RawContentBlockDeltaEvent.model_validate(events[3][1]).delta.text == "Fo"


def test_builders_hand_out_fresh_dicts():
    _, first = message_stop_event()
    first["type"] = "mutated"

    assert message_stop_event()[1] == {"type": "message_stop"}
    assert ping_event()[1] == {"type": "ping"}


def sdk_client(payload: bytes) -> anthropic.Anthropic:
    def handler(request):
        return httpx2.Response(200, content=payload, headers={"content-type": "text/event-stream"})

    return anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://portal.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def test_sdk_accumulates_our_stream_into_a_message():
    payload = b"".join(sse.named_event(name, data) for name, data in stream_events())
    client = sdk_client(payload)

    with client.messages.stream(
        model="gemma-3-27b", max_tokens=64, messages=[{"role": "user", "content": "2+2?"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Four. ✓"
    assert final.content[0].text == "Four. ✓"
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 3)


def test_sdk_raises_our_mid_stream_error():
    events = [*stream_events()[:4], error_event("The model backend failed to answer.", "api_error")]
    client = sdk_client(b"".join(sse.named_event(name, data) for name, data in events))

    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="m", max_tokens=8, messages=[USER]) as stream,
    ):
        list(stream.text_stream)

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "The model backend failed to answer."},
    }


def test_sdk_reads_our_message_response():
    body = message_response(
        request_id=REQUEST_ID,
        model="gemma-3-27b",
        text="Four.",
        finish_reason="stop",
        usage=usage_dict(12, 3),
    )

    def handler(request):
        return httpx2.Response(
            200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://portal.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )

    message = client.messages.create(model="gemma-3-27b", max_tokens=8, messages=[USER])

    assert message.content[0].text == "Four."


# -- errors ------------------------------------------------------------------------------


def test_error_body_and_event():
    assert error_body(type_="rate_limit_error", message="Slow down.") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down."},
    }
    with_id = error_body(type_="api_error", message="x", request_id=REQUEST_ID)
    assert with_id["request_id"] == REQUEST_ID
    assert error_event("Boom.", "overloaded_error") == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Boom."}},
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("invalid_request_error", 400, "invalid_request_error"),
        ("invalid_json", 400, "invalid_request_error"),
        ("method_not_allowed", 405, "invalid_request_error"),
        ("key_limit_reached", 409, "invalid_request_error"),
        ("unsupported_media_type", 415, "invalid_request_error"),
        ("invalid_api_key", 401, "authentication_error"),
        ("not_authenticated", 401, "authentication_error"),
        ("model_not_allowed", 403, "permission_error"),
        ("model_not_found", 404, "not_found_error"),
        ("request_too_large", 413, "request_too_large"),
        ("rate_limit_exceeded", 429, "rate_limit_error"),
        ("insufficient_quota", 429, "rate_limit_error"),
        ("internal_error", 500, "api_error"),
        ("upstream_error", 502, "api_error"),
        ("no_healthy_router", 503, "overloaded_error"),
        ("access_paused", 503, "overloaded_error"),
        ("upstream_timeout", 504, "timeout_error"),
        ("anything", 529, "overloaded_error"),
        ("anything", 418, "invalid_request_error"),
        ("anything", 507, "api_error"),
    ],
)
def test_anthropic_error_type(code, status, expected):
    assert anthropic_error_type(code, status) == expected


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_every_catalog_error_becomes_a_body_the_sdk_knows(code):
    kind = CATALOG[code]
    body = error_body(type_=anthropic_error_type(code, kind.status), message=kind.message)

    if body["error"]["type"] == "request_too_large":
        # Documented by Anthropic for 413, but absent from the SDK's typed union.
        assert body["error"] == {"type": "request_too_large", "message": kind.message}
    else:
        assert ErrorResponse.model_validate(body).error.message == kind.message
