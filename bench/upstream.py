"""A near-zero-cost upstream: canned answers from a bare asyncio Protocol.

    python bench/upstream.py --port P [--tokens 16] [--latency-ms 2000] [--tokens-per-second 2]

Answers `POST /api/v1/completions[/<session>]` (the router's API, what the Portal
calls) with one fixed `text_completion`, and `POST .../chat/completions` (the
OpenAI chat API, what the LiteLLM proxy calls with `model: openai/<name>`) with the
same answer as a `chat.completion`; when the body says `"stream":true`, as SSE chunks
and `[DONE]`. `GET` answers a status. No validation: it exists so the benchmark
measures the proxies, not the upstream, and the same process serves the direct
calls, the Portal and LiteLLM. `--latency-ms` delays each answer (a stream's headers
and first chunk) and `--tokens-per-second` paces a stream's chunks: the slow and
held-stream upstreams. Prints `upstream listening on http://127.0.0.1:P` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

WORD = "tok "
CREATED = 1700000000


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


def _whole(tokens: int, chat: bool) -> bytes:
    if chat:
        body = {
            "id": "chatcmpl-canned",
            "object": "chat.completion",
            "created": CREATED,
            "model": "canned",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": WORD * tokens},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(tokens),
        }
    else:
        body = {
            "id": "cmpl-canned",
            "object": "text_completion",
            "created": CREATED,
            "model": "canned",
            "choices": [
                {"index": 0, "text": WORD * tokens, "finish_reason": "stop", "logprobs": None}
            ],
            "usage": _usage(tokens),
        }
    data = json.dumps(body, separators=(",", ":")).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return (head % len(data)) + data


def _events(tokens: int, chat: bool) -> list[bytes]:
    """A stream's frames: the headers, one chunked frame per token, `[DONE]` and the end."""
    frames = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ]
    for index in range(tokens):
        last = index == tokens - 1
        finish = "stop" if last else None
        if chat:
            chunk = {
                "id": "chatcmpl-canned",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": "canned",
                "choices": [{"index": 0, "delta": {"content": WORD}, "finish_reason": finish}],
            }
        else:
            chunk = {
                "id": "cmpl-canned",
                "object": "text_completion",
                "created": CREATED,
                "model": "canned",
                "choices": [{"index": 0, "text": WORD, "finish_reason": finish, "logprobs": None}],
            }
        if last:
            chunk["usage"] = _usage(tokens)
        event = b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        frames.append(b"%x\r\n%s\r\n" % (len(event), event))
    done = b"data: [DONE]\n\n"
    frames.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    return frames


def answers(tokens: int) -> dict[tuple[bool, bool], list[bytes]]:
    """(chat, stream) -> the frames of that answer; a whole answer is one frame."""
    return {
        (chat, stream): _events(tokens, chat) if stream else [_whole(tokens, chat)]
        for chat in (False, True)
        for stream in (False, True)
    }


STATUS = b'{"status":"ok","name":"canned-upstream"}'
STATUS_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(STATUS)
) + STATUS


PENDING: set[asyncio.Future] = set()


class Canned(asyncio.Protocol):
    frames: dict[tuple[bool, bool], list[bytes]] = {}
    latency = 0.0  # seconds before an answer
    interval = 0.0  # seconds between a stream's chunks

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get"):
                self.transport.write(STATUS_RESPONSE)
                continue
            request_line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            chat = b"/chat/completions" in request_line
            stream = b'"stream":true' in body or b'"stream": true' in body
            frames = self.frames[(chat, stream)]
            if not self.latency and not (stream and self.interval):
                self.transport.write(b"".join(frames))  # the zero-cost path: one write
            else:
                task = asyncio.ensure_future(self._paced(frames, stream))
                PENDING.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(PENDING.discard)

    async def _paced(self, frames: list[bytes], stream: bool) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        if not (stream and self.interval):
            if not self.transport.is_closing():
                self.transport.write(b"".join(frames))
            return
        # Headers and the first token together, then one token per interval.
        parts = [frames[0] + frames[1], *frames[2:-1], frames[-1]]
        for index, part in enumerate(parts):
            if index and index < len(parts) - 1:
                await asyncio.sleep(self.interval)
            if self.transport.is_closing():
                return
            self.transport.write(part)


async def main(port: int, tokens: int, latency_ms: float, tokens_per_second: float) -> None:
    Canned.frames = answers(tokens)
    Canned.latency = latency_ms / 1000
    Canned.interval = 1 / tokens_per_second if tokens_per_second > 0 else 0.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"upstream listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Delay before each answer.")
    parser.add_argument(
        "--tokens-per-second", type=float, default=0.0, help="Stream pacing (0 = unpaced)."
    )
    args = parser.parse_args()
    asyncio.run(main(args.port, args.tokens, args.latency_ms, args.tokens_per_second))
