"""A small asyncio HTTP/1.1 load client: keep-alive, Content-Length and chunked bodies.

Used for what wrk cannot tell (time to first byte, a fixed request rate measured from
each request's scheduled start, 1,000 held streams) and as the fallback saturating
load generator when wrk is missing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False

    def request(self) -> bytes:
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
        ]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


@dataclass(slots=True)
class Result:
    ok: bool
    status: int
    ttfb: float  # seconds from send to the first body byte
    total: float  # seconds from send (or the scheduled start) to the last byte
    error: str = ""


class BadResponse(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader, started: float, stream: bool) -> Result:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    ttfb = None
    body = bytearray()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if ttfb is None:
                ttfb = time.perf_counter() - started
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    else:
        length = int(headers.get("content-length", "0"))
        first = await reader.readexactly(min(1, length)) if length else b""
        ttfb = time.perf_counter() - started
        body += first + (await reader.readexactly(length - len(first)) if length > 1 else b"")
    total = time.perf_counter() - started
    if headers.get("connection", "").lower() == "close":
        raise BadResponse("server closed the connection")
    ok = 200 <= status < 300
    error = "" if ok else f"HTTP {status}"
    if ok and stream and (b"[DONE]" not in body[-64:] or b'"error"' in body):
        ok, error = False, "incomplete or failed stream"
    return Result(ok=ok, status=status, ttfb=ttfb or total, total=total, error=error)


class Connection:
    def __init__(self, target: Target):
        self.target = target
        self.request = target.request()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, started: float | None = None) -> Result:
        if started is None:
            started = time.perf_counter()
        try:
            if self.writer is not None and self.reader.at_eof():
                # The server closed this kept-alive connection while it sat idle (its
                # keep-alive timeout): as HTTP clients do, check before reuse and reconnect.
                self.close()
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(
                    self.target.host, self.target.port
                )
            self.writer.write(self.request)
            return await _read_response(self.reader, started, self.target.stream)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            BadResponse,
        ) as exc:
            self.close()
            return Result(
                ok=False,
                status=0,
                ttfb=0.0,
                total=time.perf_counter() - started,
                error=type(exc).__name__,
            )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def sequential(target: Target, count: int, warmup: int = 20) -> list[Result]:
    """One client, one keep-alive connection, one request after another."""
    conn = Connection(target)
    for _ in range(warmup):
        await conn.call()
    results = [await conn.call() for _ in range(count)]
    conn.close()
    return results


async def fixed_rate(target: Target, rate: float, duration: float) -> list[Result]:
    """Open loop: request i is due at t0 + i/rate whatever earlier ones do; latency counts
    from the due time (no coordinated omission)."""
    idle: list[Connection] = []
    results: list[Result] = []
    tasks = []

    async def one(due: float) -> None:
        conn = idle.pop() if idle else Connection(target)
        result = await conn.call(started=due)
        results.append(result)
        if conn.writer is not None:
            idle.append(conn)

    for _ in range(8):  # warm connections so the first requests pay no connect
        conn = Connection(target)
        await conn.call()
        idle.append(conn)
    start = time.perf_counter() + 0.05
    total = int(rate * duration)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return results


async def closed_loop(
    target: Target, connections: int, duration: float
) -> tuple[list[Result], float]:
    """`connections` clients, each sending its next request when the last one finished
    (the fallback when wrk is missing). Returns the results and the elapsed seconds."""
    results: list[Result] = []
    deadline = time.perf_counter() + duration

    async def client() -> None:
        conn = Connection(target)
        while time.perf_counter() < deadline:
            results.append(await conn.call())
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return results, time.perf_counter() - started


async def held_streams(
    target: Target, count: int, on_tick: Callable[[int], None], *, connect_per_second: float = 2000
) -> tuple[list[Result], int]:
    """Open `count` streams at once and read each to its end, calling `on_tick(in_flight)`
    every 100 ms. Returns the results and the most streams in flight at one time."""
    in_flight = 0
    peak = 0
    done = asyncio.Event()

    async def one(index: int) -> Result:
        nonlocal in_flight, peak
        await asyncio.sleep(index / connect_per_second)
        conn = Connection(target)
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await conn.call()
        finally:
            in_flight -= 1
            conn.close()

    async def ticker() -> None:
        while not done.is_set():
            on_tick(in_flight)
            await asyncio.sleep(0.1)

    tick = asyncio.create_task(ticker())
    results = await asyncio.gather(*(one(i) for i in range(count)))
    done.set()
    await tick
    return list(results), peak


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
