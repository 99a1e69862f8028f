"""OpenAI's Responses API (`POST /v1/responses`, stateless): the `response` object, whole
and streamed, over the same flow as the other endpoints.

A stream is `response.created`, `response.in_progress`, then each output item between
`response.output_item.added` and `.done` (a message: `content_part.added`,
`output_text.delta`…, `output_text.done`, `content_part.done`; a function call:
`function_call_arguments.delta`, `.done`), then `response.completed`
(`response.incomplete` when `max_output_tokens` cut the answer, `response.failed` when
it failed), every event numbered by `sequence_number`. Request bodies:
gateway/responses_input.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway import sse
from gateway.conversation import Tool, ToolCall
from gateway.protocols import Answer, Shape
from gateway.responses_input import parse_responses
from gateway.validation import InferenceRequest


def response_id(request_id: str) -> str:
    return "resp_" + request_id[4:]


def _message_id(request_id: str, number: int) -> str:
    return f"msg_{request_id[4:]}" + (f"_{number}" if number else "")


def _call_item_id(call: ToolCall) -> str:
    return "fc_" + call.id.removeprefix("call_")


def usage(answer: Answer) -> dict:
    return {
        "input_tokens": answer.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": answer.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def status(answer: Answer) -> str:
    """ "incomplete" when the answer ran into max_output_tokens (a call ends it otherwise)."""
    return "incomplete" if answer.finish == "length" and not answer.tool_calls else "completed"


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str, state: str) -> dict:
    return {
        "type": "message",
        "id": item_id,
        "status": state,
        "role": "assistant",
        "content": [_text_part(text)],
    }


def call_item(call: ToolCall) -> dict:
    return {
        "type": "function_call",
        "id": _call_item_id(call),
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    }


def _tool(tool: Tool) -> dict:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description or None,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def response_object(
    *,
    request_id: str,
    model: str,
    created: int,
    req: InferenceRequest,
    output: list[dict],
    state: str,
    answer: Answer | None = None,
    error: dict | None = None,
) -> dict:
    """The `response`, echoing the request's settings as OpenAI does; `usage` once answered."""
    raw = req.raw
    return {
        "id": response_id(request_id),
        "object": "response",
        "created_at": created,
        "status": state,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if state == "incomplete" else None,
        "instructions": req.system or None,
        "max_output_tokens": req.max_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls,
        "previous_response_id": None,
        "store": False,  # whatever the request said: nothing is stored
        "temperature": req.temperature,
        "text": {
            "format": (raw.get("text") or {}).get("format") or {"type": "text"},
            "verbosity": "medium",
        },
        "tool_choice": raw.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in req.tools],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage(answer) if answer is not None else None,
        "user": req.user,
        "metadata": raw.get("metadata") or {},
    }


def _whole(
    *, request_id, model, created, answer: Answer, router_body, req: InferenceRequest
) -> dict:
    state = status(answer)
    output = []
    if answer.text or not answer.tool_calls:
        output.append(message_item(_message_id(request_id, 0), answer.text, state))
    output += [call_item(call) for call in answer.tool_calls]
    return response_object(
        request_id=request_id,
        model=model,
        created=created,
        req=req,
        output=output,
        state=state,
        answer=answer,
    )


class ResponsesEmitter:
    """The semantic event stream, plain text and tool calls alike: text opens a message
    item (a new one after a call), a call closes it and goes out as its own item."""

    def __init__(self, shape: Shape, *, request_id: str, model: str, created: int):
        self.common = {"request_id": request_id, "model": model, "created": created}
        self.sequence = 0
        self.output: list[dict] = []  # the items sent, as the final response lists them
        self.message: dict | None = None  # the message item being written
        self.messages = 0
        self.req: InferenceRequest | None = None

    def _event(self, kind: str, **fields) -> bytes:
        event = sse.named_event(kind, {"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return event

    def _response(self, state: str, **extra) -> dict:
        return response_object(
            req=self.req, output=self.output, state=state, **self.common, **extra
        )

    def opening(self, *, req, prompt_tokens) -> Iterable[bytes]:
        self.req = req
        snapshot = self._response("in_progress")
        yield self._event("response.created", response=snapshot)
        yield self._event("response.in_progress", response=snapshot)

    def _open_message(self) -> Iterable[bytes]:
        self.message = message_item(
            _message_id(self.common["request_id"], self.messages), "", "in_progress"
        )
        self.messages += 1
        self.output.append(self.message)
        index, item_id = len(self.output) - 1, self.message["id"]
        yield self._event(
            "response.output_item.added", output_index=index, item={**self.message, "content": []}
        )
        yield self._event(
            "response.content_part.added",
            item_id=item_id,
            output_index=index,
            content_index=0,
            part=_text_part(""),
        )

    def _close_message(self, state: str = "completed") -> Iterable[bytes]:
        message, self.message = self.message, None
        message["status"] = state
        part = message["content"][0]
        where = {"item_id": message["id"], "output_index": self.output.index(message)}
        yield self._event(
            "response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]
        )
        yield self._event("response.content_part.done", **where, content_index=0, part=part)
        yield self._event(
            "response.output_item.done", output_index=where["output_index"], item=message
        )

    def text(self, text: str) -> Iterable[bytes]:
        if self.message is None:
            yield from self._open_message()
        self.message["content"][0]["text"] += text
        yield self._event(
            "response.output_text.delta",
            item_id=self.message["id"],
            output_index=len(self.output) - 1,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def calls(self, calls: list[ToolCall]) -> Iterable[bytes]:
        if self.message is not None:
            yield from self._close_message()
        for call in calls:
            item = call_item(call)
            self.output.append(item)
            where = {"item_id": item["id"], "output_index": len(self.output) - 1}
            yield self._event(
                "response.output_item.added",
                output_index=where["output_index"],
                item={**item, "arguments": "", "status": "in_progress"},
            )
            yield self._event(
                "response.function_call_arguments.delta", **where, delta=call.arguments
            )
            yield self._event(
                "response.function_call_arguments.done",
                **where,
                name=call.name,
                arguments=call.arguments,
            )
            yield self._event(
                "response.output_item.done", output_index=where["output_index"], item=item
            )

    def closing(self, *, req, answer: Answer) -> Iterable[bytes]:
        state = status(answer)
        if self.message is None and not self.output:
            yield from self._open_message()  # an empty answer is one empty message, as when whole
        if self.message is not None:
            yield from self._close_message(state)
        kind = "response.incomplete" if state == "incomplete" else "response.completed"
        yield self._event(kind, response=self._response(state, answer=answer))

    def failure(self, *, message: str, code: str, type_: str) -> Iterable[bytes]:
        """`response.failed` with the Portal's error code; the items so far, unfinished."""
        if self.message is not None:
            self.message["status"] = "incomplete"
        yield self._event(
            "response.failed",
            response=self._response("failed", error={"code": code, "message": message}),
        )


def _through_emitter(**_):
    raise TypeError(
        "Responses streams carry state (event numbers, open items): ResponsesEmitter writes them"
    )


RESPONSES = Shape(
    endpoint="responses",
    style="openai",
    parse=parse_responses,
    whole=_whole,
    opening=_through_emitter,
    piece=_through_emitter,
    closing=_through_emitter,
    failure=_through_emitter,
)
