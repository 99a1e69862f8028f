"""A near-zero-cost upstream: canned router answers from a bare asyncio Protocol.

    python bench/upstream.py --port P [--tokens 16]

Answers `POST /api/v1/completions[/<session>]` with one fixed `text_completion`
(or, when the body says `"stream":true`, the same answer as SSE chunks and
`[DONE]`), and `GET /api/v1/status` with ok. No validation, no pacing: it exists so
the benchmark measures the gateway, not the upstream. Prints
`upstream listening on http://127.0.0.1:P` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

WORD = "tok "


def _answers(tokens: int) -> tuple[bytes, bytes, bytes]:
    usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    whole = json.dumps(
        {
            "id": "cmpl-canned",
            "object": "text_completion",
            "created": 1700000000,
            "model": "canned",
            "choices": [
                {"index": 0, "text": WORD * tokens, "finish_reason": "stop", "logprobs": None}
            ],
            "usage": usage,
        },
        separators=(",", ":"),
    ).encode()
    whole_response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(whole)
    ) + whole

    events = []
    for index in range(tokens):
        last = index == tokens - 1
        chunk = {
            "id": "cmpl-canned",
            "object": "text_completion",
            "created": 1700000000,
            "model": "canned",
            "choices": [
                {
                    "index": 0,
                    "text": WORD,
                    "finish_reason": "stop" if last else None,
                    "logprobs": None,
                }
            ],
        }
        if last:
            chunk["usage"] = usage
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    stream_response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ) + body

    status = b'{"status":"ok","name":"canned-upstream"}'
    status_response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(status)
    ) + status
    return whole_response, stream_response, status_response


class Canned(asyncio.Protocol):
    whole = stream = status = b""

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
                self.transport.write(self.status)
            elif b'"stream":true' in body or b'"stream": true' in body:
                self.transport.write(self.stream)
            else:
                self.transport.write(self.whole)


async def main(port: int, tokens: int) -> None:
    Canned.whole, Canned.stream, Canned.status = _answers(tokens)
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
    args = parser.parse_args()
    asyncio.run(main(args.port, args.tokens))
