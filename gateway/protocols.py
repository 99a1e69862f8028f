"""The three public protocols over one flow: how each parses, answers and streams."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway import anthropic, messages_request, openai_format, sse, validation
from gateway.conversation import ToolCall
from gateway.validation import InferenceRequest


@dataclass(slots=True)
class Answer:
    """What the router said, normalized: text, finish reason, counts, and the stop
    sequence the text was cut at (gateway/stops.py), if it was."""

    text: str
    finish: str | None
    prompt_tokens: int
    completion_tokens: int
    stop_sequence: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Shape:
    endpoint: str
    style: str  # "openai" or "anthropic": the error shape
    parse: Callable[[object], InferenceRequest]
    whole: Callable[..., dict]
    opening: Callable[..., Iterable[bytes]]
    piece: Callable[..., bytes]
    closing: Callable[..., Iterable[bytes]]
    failure: Callable[..., Iterable[bytes]]
    call_id_prefix: str = "call_"  # ids of the tool calls the Portal reads from answers


# -- OpenAI chat ----------------------------------------------------------------------------


def _chat_whole(*, request_id, model, created, answer: Answer, router_body, req=None) -> dict:
    return openai_format.chat_completion(
        request_id=request_id,
        model=model,
        router_body=router_body,
        usage=openai_format.usage_dict(answer.prompt_tokens, answer.completion_tokens),
        created=created,
        text=answer.text,
        finish_reason=answer.finish,
        tool_calls=answer.tool_calls,
    )


def _chat_opening(*, request_id, model, created, req, prompt_tokens) -> Iterable[bytes]:
    yield sse.data_event(
        openai_format.chat_first_chunk(
            chunk_id=openai_format.chat_chunk_id(request_id), created=created, model=model
        )
    )


def _chat_piece(*, request_id, model, created, text) -> bytes:
    return sse.data_event(
        openai_format.chat_chunk(
            chunk_id=openai_format.chat_chunk_id(request_id),
            created=created,
            model=model,
            delta={"content": text},
        )
    )


def _chat_closing(*, request_id, model, created, req, answer: Answer) -> Iterable[bytes]:
    chunk_id = openai_format.chat_chunk_id(request_id)
    yield sse.data_event(
        openai_format.chat_chunk(
            chunk_id=chunk_id,
            created=created,
            model=model,
            delta={},
            finish_reason=answer.finish or "stop",
        )
    )
    if req.include_usage:
        usage = openai_format.usage_dict(answer.prompt_tokens, answer.completion_tokens)
        yield sse.data_event(
            openai_format.chat_usage_chunk(
                chunk_id=chunk_id, created=created, model=model, usage=usage
            )
        )
    yield sse.DONE


def _openai_failure(*, message, code, type_) -> Iterable[bytes]:
    yield sse.data_event(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


CHAT = Shape(
    endpoint="chat.completions",
    style="openai",
    parse=validation.parse_chat,
    whole=_chat_whole,
    opening=_chat_opening,
    piece=_chat_piece,
    closing=_chat_closing,
    failure=_openai_failure,
)


# -- OpenAI text completions -----------------------------------------------------------------


def _completion_whole(*, request_id, model, created, answer: Answer, router_body, req=None) -> dict:
    return openai_format.text_completion(
        request_id=request_id,
        model=model,
        router_body=router_body,
        usage=openai_format.usage_dict(answer.prompt_tokens, answer.completion_tokens),
        created=created,
        text=answer.text,
        finish_reason=answer.finish,
    )


def _completion_opening(**_) -> Iterable[bytes]:
    return ()


def _completion_piece(*, request_id, model, created, text) -> bytes:
    return sse.data_event(
        openai_format.completion_chunk(
            chunk_id=openai_format.completion_chunk_id(request_id),
            created=created,
            model=model,
            text=text,
        )
    )


def _completion_closing(*, request_id, model, created, req, answer: Answer) -> Iterable[bytes]:
    chunk_id = openai_format.completion_chunk_id(request_id)
    yield sse.data_event(
        openai_format.completion_chunk(
            chunk_id=chunk_id,
            created=created,
            model=model,
            text="",
            finish_reason=answer.finish or "stop",
        )
    )
    if req.include_usage:
        usage = openai_format.usage_dict(answer.prompt_tokens, answer.completion_tokens)
        yield sse.data_event(
            openai_format.completion_usage_chunk(
                chunk_id=chunk_id, created=created, model=model, usage=usage
            )
        )
    yield sse.DONE


COMPLETIONS = Shape(
    endpoint="completions",
    style="openai",
    parse=validation.parse_completion,
    whole=_completion_whole,
    opening=_completion_opening,
    piece=_completion_piece,
    closing=_completion_closing,
    failure=_openai_failure,
)


# -- Anthropic messages ----------------------------------------------------------------------


def _messages_whole(*, request_id, model, created, answer: Answer, router_body, req=None) -> dict:
    return anthropic.message_response(
        request_id=request_id,
        model=model,
        text=answer.text,
        finish_reason=answer.finish,
        usage=openai_format.usage_dict(answer.prompt_tokens, answer.completion_tokens),
        stop_sequence=answer.stop_sequence,
        tool_calls=answer.tool_calls,
    )


def _messages_opening(*, request_id, model, created, req, prompt_tokens) -> Iterable[bytes]:
    for event in (
        anthropic.message_start_event(
            request_id=request_id, model=model, input_tokens=prompt_tokens
        ),
        anthropic.content_block_start_event(),
        anthropic.ping_event(),
    ):
        yield sse.named_event(*event)


def _messages_piece(*, request_id, model, created, text) -> bytes:
    return sse.named_event(*anthropic.text_delta_event(text))


def _messages_closing(*, request_id, model, created, req, answer: Answer) -> Iterable[bytes]:
    yield sse.named_event(*anthropic.content_block_stop_event())
    yield sse.named_event(
        *anthropic.message_delta_event(
            finish_reason=answer.finish,
            output_tokens=answer.completion_tokens,
            input_tokens=answer.prompt_tokens,
            stop_sequence=answer.stop_sequence,
        )
    )
    yield sse.named_event(*anthropic.message_stop_event())


def _messages_failure(*, message, code, type_) -> Iterable[bytes]:
    yield sse.named_event(
        *anthropic.error_event(message, anthropic.anthropic_error_type(code, 502))
    )


MESSAGES = Shape(
    endpoint="messages",
    style="anthropic",
    parse=messages_request.parse_messages,
    whole=_messages_whole,
    opening=_messages_opening,
    piece=_messages_piece,
    closing=_messages_closing,
    failure=_messages_failure,
    call_id_prefix="toolu_",
)
