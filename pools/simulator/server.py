"""`RouterSimulator`: an asyncio server that speaks the router contract (ROUTER_API.md)."""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import secrets
import sys
import time
from collections.abc import Callable

from .completions import (
    DONE_EVENT,
    completion_body,
    completion_request_parse,
    completion_tokens,
    prompt_token_count,
    sse_event,
    text_tokens,
    usage,
)
from .config import FAULT_KNOBS, SimConfig, config_update
from .http1 import (
    LAST_CHUNK,
    MAX_HEAD_BYTES,
    BadRequest,
    Request,
    chunk,
    json_response,
    read_request,
    stream_head,
)
from .prompts import OUTPUT_FORMAT_MARKER, TOOLS_MARKER, prompt_read
from .stats import SimStats
from .structured import structured_answer

COMPLETIONS_PATH = "/api/v1/completions"
ROUTER_NAME = "cortensor-router-sim"


class RouterSimulator:
    """One simulated router node. `config` may be replaced at any time (`POST /_sim/config`);
    each request reads it once when it starts."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.stats = SimStats()
        self._rng = random.Random(config.seed)
        self._faults_served = 0  # spoilt answers since the fault knobs last changed
        self._server: asyncio.Server | None = None
        self._stop: asyncio.Event | None = None
        self._connections: set[asyncio.Task] = set()
        self._started_at = time.time()

    async def serve(self, *, on_listening: Callable[[str, int], None] | None = None) -> None:
        """Listen until `stop()`; `on_listening(host, port)` runs once the socket is bound."""
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(
            self._serve_connection,
            self.config.host,
            self.config.port,
            backlog=4096,
            limit=MAX_HEAD_BYTES,
        )
        port = self._server.sockets[0].getsockname()[1]
        if on_listening is not None:
            on_listening(self.config.host, port)
        try:
            await self._stop.wait()
        finally:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    def stop(self) -> None:
        """Stop listening and drop open connections; call on the server's loop."""
        if self._stop is not None:
            self._stop.set()

    # --- connections ---------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
                except BadRequest as exc:
                    body = {"error": exc.message}
                    writer.write(json_response(exc.status, body, keep_alive=False))
                    break
                if request is None or not await self._dispatch(request, writer):
                    break
                if writer.transport.get_write_buffer_size() > 64 * 1024:
                    await writer.drain()  # a pipelining client that does not read
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _dispatch(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        path = request.path
        if path.startswith("/_sim/"):
            status, payload = self._control(request)
            writer.write(json_response(status, payload, keep_alive=request.keep_alive))
            return request.keep_alive

        self.stats.request_started(path)
        if path == COMPLETIONS_PATH or path.startswith(COMPLETIONS_PATH + "/"):
            self.stats.completion_started()
            try:
                return await self._completions(request, writer)
            finally:
                self.stats.completion_finished()
        if path == "/api/v1/status":
            return self._health(request, writer, self._status_body)
        if path == "/api/v1/info":
            return self._health(request, writer, self._info_body)
        return self._answer(request, writer, 404, {"error": f"no route for {path}"})

    def _answer(
        self,
        request: Request,
        writer: asyncio.StreamWriter,
        status: int,
        payload: dict,
        extra_headers: str = "",
    ) -> bool:
        self.stats.by_status[status] += 1
        self._log(request, status)
        keep_alive = request.keep_alive
        writer.write(
            json_response(status, payload, keep_alive=keep_alive, extra_headers=extra_headers)
        )
        return keep_alive

    def _log(self, request: Request, status: int) -> None:
        if not self.config.quiet:
            elapsed_ms = (time.perf_counter() - request.received_at) * 1000
            line = f"{request.method} {request.path} {status} {elapsed_ms:.1f}ms"
            print(line, file=sys.stderr, flush=True)

    # --- completions ---------------------------------------------------------------

    async def _completions(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        config = self.config
        if request.method != "POST":
            return self._answer(request, writer, 405, {"error": "use POST"}, "Allow: POST\r\n")
        authorization = request.headers.get("authorization")
        if config.require_key and not _bearer_matches(authorization, config.require_key):
            return self._answer(request, writer, 401, {"error": "invalid or missing API key"})
        path_session = request.path[len(COMPLETIONS_PATH) :].strip("/") or None
        try:
            completion = completion_request_parse(request.body, path_session=path_session)
        except ValueError as exc:
            return self._answer(request, writer, 400, {"error": str(exc)})
        if config.sessions is not None and completion.session_id not in config.sessions:
            return self._answer(
                request, writer, 404, {"error": f"session {completion.session_id} not found"}
            )
        self.stats.completion_accepted(
            path=request.path,
            session_id=completion.session_id,
            authorization_sent=authorization is not None,
            body=completion.body,
        )

        fail = config.failure_rate > 0 and self._rng.random() < config.failure_rate
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fail:
            self.stats.failures_injected += 1
            return self._answer(
                request,
                writer,
                config.fail_status,
                {"error": "simulated router failure", "status": config.fail_status},
            )

        prompt = completion.prompt
        # The substring tests keep plain prompts (the bench's) off the parsing path.
        structured = None
        if TOOLS_MARKER in prompt or OUTPUT_FORMAT_MARKER in prompt:
            structured = self._structured_tokens(prompt, config)
        count = config.completion_tokens if structured is None else len(structured)
        finish_reason = "stop"
        if completion.max_tokens is not None and completion.max_tokens < count:
            count, finish_reason = completion.max_tokens, "length"
        tokens = completion_tokens(prompt, count) if structured is None else structured[:count]
        totals = (
            None
            if config.omit_usage
            else usage(
                prompt_tokens=prompt_token_count(prompt) * config.usage_multiplier,
                completion_tokens=count * config.usage_multiplier,
            )
        )
        completion_id = "cmpl-" + secrets.token_hex(12)
        if not completion.stream:
            body = completion_body(
                completion_id=completion_id,
                created=int(time.time()),
                model=config.model_name,
                text="".join(tokens),
                finish_reason=finish_reason,
                usage=totals,
            )
            return self._answer(request, writer, 200, body)
        return await self._stream(
            request,
            writer,
            config=config,
            completion_id=completion_id,
            tokens=tokens,
            finish_reason=finish_reason,
            totals=totals,
        )

    def _structured_tokens(self, prompt: str, config: SimConfig) -> list[str] | None:
        """The tool-call or JSON answer's tokens, or None when the prompt asks for neither.

        `fault_count` >= 0 limits how many answers `tool_mode` / `json_mode` spoil."""
        asks = prompt_read(prompt)
        if asks is None:
            return None
        spoil = config.fault_count < 0 or self._faults_served < config.fault_count
        answer = structured_answer(
            asks,
            prompt=prompt,
            tool_mode=config.tool_mode if spoil else "call",
            json_mode=config.json_mode if spoil else "valid",
            parallel_calls=config.parallel_calls,
            text_tokens=config.completion_tokens,
        )
        if answer.faulty:
            self._faults_served += 1
        self.stats.structured_answered(kind=answer.kind, faulty=answer.faulty)
        return text_tokens(answer.text)

    async def _stream(
        self,
        request: Request,
        writer: asyncio.StreamWriter,
        *,
        config: SimConfig,
        completion_id: str,
        tokens: list[str],
        finish_reason: str,
        totals: dict[str, int] | None,
    ) -> bool:
        """Send one SSE event per token, the last with finish_reason and usage, then [DONE]."""
        stats = self.stats
        stats.streams_started += 1
        stats.by_status[200] += 1
        self._log(request, 200)
        writer.write(stream_head(keep_alive=request.keep_alive))
        try:
            if config.ttft_ms:
                await writer.drain()
                await asyncio.sleep(config.ttft_ms / 1000)
            if not await self._send_tokens(
                writer,
                config=config,
                completion_id=completion_id,
                tokens=tokens,
                finish_reason=finish_reason,
                totals=totals,
            ):
                stats.streams_dropped += 1
                return False  # the connection closes mid-body: no [DONE], no last chunk
            writer.write(chunk(DONE_EVENT) + LAST_CHUNK)
            await writer.drain()
        except ConnectionError:
            stats.streams_abandoned += 1
            return False
        stats.streams_completed += 1
        return request.keep_alive

    async def _send_tokens(
        self,
        writer: asyncio.StreamWriter,
        *,
        config: SimConfig,
        completion_id: str,
        tokens: list[str],
        finish_reason: str,
        totals: dict[str, int] | None,
    ) -> bool:
        """One event per token, paced; False when `disconnect_after_tokens` cut the stream."""
        created = int(time.time())
        interval = 1 / config.tokens_per_second if config.tokens_per_second else 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        pieces = tokens or [""]  # zero tokens still end with one final chunk
        last = len(pieces) - 1
        for index, text in enumerate(pieces):
            if interval and index:
                delay = started + index * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if writer.transport.is_closing():
                raise ConnectionResetError("the client went away mid-stream")
            final = index == last
            event = completion_body(
                completion_id=completion_id,
                created=created,
                model=config.model_name,
                text=text,
                finish_reason=finish_reason if final else None,
                usage=totals if final else None,
            )
            writer.write(chunk(sse_event(event)))
            await writer.drain()
            if index + 1 == config.disconnect_after_tokens:
                return False
        return True

    # --- health and control --------------------------------------------------------

    def _health(self, request: Request, writer: asyncio.StreamWriter, body: Callable[[], dict]):
        if request.method != "GET":
            return self._answer(request, writer, 405, {"error": "use GET"}, "Allow: GET\r\n")
        return self._answer(request, writer, 200, body())

    def _status_body(self) -> dict:
        return {
            "status": "ok",
            "name": ROUTER_NAME,
            "version": "sim",
            "uptime_seconds": int(time.time() - self._started_at),
            "in_flight": self.stats.in_flight,
        }

    def _info_body(self) -> dict:
        sessions = self.config.sessions
        return {
            "name": ROUTER_NAME,
            "version": "sim",
            "api": "v1",
            "sessions": sorted(sessions) if sessions is not None else None,  # None: any id
            "models": [self.config.model_name],
            "streaming": True,
        }

    def _control(self, request: Request) -> tuple[int, dict]:
        """`GET /_sim/stats`, `GET|POST /_sim/config`, `POST /_sim/reset`."""
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/_sim/stats"):
            return 200, self.stats.as_json()
        if route == ("GET", "/_sim/config"):
            return 200, {"config": self.config.as_json()}
        if route == ("POST", "/_sim/config"):
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object of knobs")
                self.config = config_update(self.config, changes)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                return 400, {"error": str(exc)}
            if "seed" in changes:
                self._rng.seed(self.config.seed)
            if FAULT_KNOBS & {str(name).replace("-", "_") for name in changes}:
                self._faults_served = 0
            return 200, {"config": self.config.as_json()}
        if route == ("POST", "/_sim/reset"):
            self.stats.reset()
            self._rng.seed(self.config.seed)
            self._faults_served = 0
            return 200, {"reset": True}
        return 404, {"error": f"no control route {request.method} {request.path}"}


def _bearer_matches(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
