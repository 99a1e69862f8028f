"""Stream emitters: OpenAI `delta.tool_calls` chunks, Anthropic `tool_use` content blocks
with `input_json_delta`, Responses' semantic events (gateway/responses.py). Every stream
is written by one; plain chat and messages text goes through the shapes' own builders
(gateway/protocols.py).

An emitter knows where the stream stands (which Anthropic block is open, how many calls
went out) so text and calls can come in any order.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway import anthropic, openai_format, responses, sse
from gateway.conversation import ToolCall


class ChatEmitter:
    def __init__(self, shape, *, request_id: str, model: str, created: int):
        self.shape = shape
        self.common = {"request_id": request_id, "model": model, "created": created}
        self.chunk_id = openai_format.chat_chunk_id(request_id)
        self.sent_calls = 0

    def opening(self, *, req, prompt_tokens) -> Iterable[bytes]:
        return self.shape.opening(req=req, prompt_tokens=prompt_tokens, **self.common)

    def text(self, text: str) -> Iterable[bytes]:
        yield self.shape.piece(text=text, **self.common)

    def _chunk(self, delta: dict) -> bytes:
        return sse.data_event(
            openai_format.chat_chunk(
                chunk_id=self.chunk_id,
                created=self.common["created"],
                model=self.common["model"],
                delta=delta,
            )
        )

    def calls(self, calls: list[ToolCall]) -> Iterable[bytes]:
        for call in calls:
            index = self.sent_calls
            self.sent_calls += 1
            yield self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            yield self._chunk(
                {"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}
            )

    def closing(self, *, req, answer) -> Iterable[bytes]:
        return self.shape.closing(req=req, answer=answer, **self.common)

    def failure(self, **error) -> Iterable[bytes]:
        return self.shape.failure(**error)


class MessagesEmitter:
    """Anthropic blocks in order: the text block the opening starts (index 0), then each
    call's `tool_use` block; text after a call opens a new text block."""

    def __init__(self, shape, *, request_id: str, model: str, created: int):
        self.shape = shape
        self.common = {"request_id": request_id, "model": model, "created": created}
        self.index = 0
        self.text_open = True  # the shape's opening starts text block 0

    def opening(self, *, req, prompt_tokens) -> Iterable[bytes]:
        return self.shape.opening(req=req, prompt_tokens=prompt_tokens, **self.common)

    def text(self, text: str) -> Iterable[bytes]:
        if not self.text_open:
            self.index += 1
            self.text_open = True
            yield sse.named_event(*anthropic.content_block_start_event(self.index))
        yield sse.named_event(*anthropic.text_delta_event(text, self.index))

    def calls(self, calls: list[ToolCall]) -> Iterable[bytes]:
        for call in calls:
            if self.text_open:
                yield sse.named_event(*anthropic.content_block_stop_event(self.index))
                self.text_open = False
            self.index += 1
            yield sse.named_event(*anthropic.tool_use_start_event(call, self.index))
            yield sse.named_event(*anthropic.input_json_delta_event(call.arguments, self.index))
            yield sse.named_event(*anthropic.content_block_stop_event(self.index))

    def closing(self, *, req, answer) -> Iterable[bytes]:
        if self.text_open:
            yield sse.named_event(*anthropic.content_block_stop_event(self.index))
        yield sse.named_event(
            *anthropic.message_delta_event(
                finish_reason=answer.finish,
                output_tokens=answer.completion_tokens,
                input_tokens=answer.prompt_tokens,
                stop_sequence=answer.stop_sequence,
            )
        )
        yield sse.named_event(*anthropic.message_stop_event())

    def failure(self, **error) -> Iterable[bytes]:
        return self.shape.failure(**error)


def emitter_for(shape, **common):
    if shape is responses.RESPONSES:
        return responses.ResponsesEmitter(shape, **common)
    return (
        MessagesEmitter(shape, **common)
        if shape.style == "anthropic"
        else ChatEmitter(shape, **common)
    )
