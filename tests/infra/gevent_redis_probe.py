"""A gevent-patched process driving the fast-state script transports, for tests/infra.

Run it as the web worker runs, gevent's patches applied before anything is imported:

    python -m gevent.monkey --module tests.infra.gevent_redis_probe

It reads one request per line on stdin, `{"call": "run_script", "kwargs": {...}}`, and
answers each with one line, `{"value": ...}` or `{"error": {"type": ..., "classes":
[...], "message": ...}}`. The calls are the functions in CALLS; the clients
`open_client` makes live under a name until `close_all`. Waiting for the next request
lets other greenlets run (respmux's reader among them), as an idle worker does.
tests/infra/gevent_probe.py is the other end.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import gevent
from gevent import monkey
from gevent.fileobject import FileObjectPosix

from infra.redisendpoint import Endpoint
from infra.respclient import Script, ScriptClient
from infra.respmux import MuxClient

clients: dict[str, ScriptClient | MuxClient] = {}
connections_opened: dict[str, int] = {}


def _plain(value):
    """A reply as JSON: bytes decoded, errors as {"error": name}."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Exception):
        return {"error": type(value).__name__}
    return value


# --- calls -------------------------------------------------------------------------------


def open_client(
    name: str,
    transport: str,
    url: str,
    socket_timeout: float = 2.0,
    connect_timeout: float = 2.0,
    max_connections: int = 16,
) -> dict:
    """A MuxClient ("mux") or ScriptClient ("pooled") for `url`, under `name` (replacing
    and closing one of that name); it connects on first use."""
    if name in clients:
        clients.pop(name).close()
    endpoint = Endpoint.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
    )
    if transport == "mux":
        client = MuxClient(endpoint)
    else:
        client = ScriptClient(endpoint, max_connections=max_connections)
    clients[name] = client
    connections_opened[name] = 0
    connect = client._connect

    def counted():
        made = connect()
        connections_opened[name] += 1
        return made

    client._connect = counted
    described = {"client": type(client).__name__, "tls": endpoint.tls is not None}
    if isinstance(client, ScriptClient):
        described["semaphore"] = f"{type(client._slots).__module__}.{type(client._slots).__name__}"
    return described


def execute(name: str, command: list):
    return _plain(clients[name].execute(*command))


def run_script(name: str, source: str, keys: list = (), args: list = ()):
    return _plain(Script(clients[name], source)(keys=keys, args=args))


def opened(name: str) -> int:
    """How many connections the client has opened so far."""
    return connections_opened[name]


def many_callers(name: str, callers: int, key: str) -> dict:
    """`callers` greenlets at once, each running a script that counts in `key` and echoes
    the caller's own argument back; a ticker greenlet checks the loop kept running."""
    client = clients[name]
    echo = Script(client, "redis.call('INCR', KEYS[1]); return ARGV[1]")
    ticks = []

    def tick():
        while True:
            gevent.sleep(0.001)
            ticks.append(1)

    ticker = gevent.spawn(tick)
    jobs = [gevent.spawn(echo, keys=[key], args=[f"caller-{i}"]) for i in range(callers)]
    gevent.joinall(jobs, raise_error=True)
    ticker.kill()
    return {
        "mismatched": [i for i, job in enumerate(jobs) if job.value != f"caller-{i}".encode()],
        "count": int(client.execute("GET", key)),
        "loop_ran_meanwhile": len(ticks) > 0,
    }


def pipelined(name: str, calls: int) -> list:
    """From one greenlet: send `calls` scripts before reading any reply, then read the
    replies last first. Returns each reply, in the order the calls were sent."""
    script = Script(clients[name], "return tonumber(ARGV[1]) * 2")
    begun = [script.begin(args=[i]) for i in range(calls)]
    replies = {i: call.wait() for i, call in reversed(list(enumerate(begun)))}
    return [replies[i] for i in range(calls)]


def concurrent_outcomes(name: str, command: list, callers: int) -> dict:
    """`callers` greenlets send `command` at once: each one's outcome (the reply, or the
    error's class name) and the seconds until all were done."""
    client = clients[name]

    def call():
        try:
            return _plain(client.execute(*command))
        except Exception as exc:
            return {"error": type(exc).__name__}

    started = time.monotonic()
    jobs = [gevent.spawn(call) for _ in range(callers)]
    gevent.joinall(jobs)
    return {"outcomes": [job.value for job in jobs], "seconds": time.monotonic() - started}


def sleep(seconds: float) -> None:
    gevent.sleep(seconds)


def close_all() -> None:
    while clients:
        clients.popitem()[1].close()
    connections_opened.clear()


def faststate_scripts(callers: int) -> dict:
    """Through infra/faststate.py, as the web worker uses it (Django set up from the
    environment): the transport chosen, and `callers` greenlets each running a script and
    a redis-py command at once."""
    import django

    django.setup()
    from django.conf import settings

    from infra import faststate

    count = settings.FAST_STATE_PREFIX + "gevent-count"
    echo = faststate.script("redis.call('INCR', KEYS[1]); return ARGV[1]")
    redis_py = faststate.get_client()

    def call(i):
        redis_py.incr(count)
        return echo(keys=[count], args=[f"caller-{i}"])

    jobs = [gevent.spawn(call, i) for i in range(callers)]
    gevent.joinall(jobs, raise_error=True)
    try:
        return {
            "transport": faststate.transport().value,
            "mismatched": [i for i, job in enumerate(jobs) if job.value != f"caller-{i}".encode()],
            "count": int(redis_py.get(count)),
            "redis_py_connections": len(redis_py.connection_pool._connections),
        }
    finally:
        redis_py.delete(count)
        faststate.reset_client_for_tests()


def writes_for_callers(name: str, callers: int) -> dict:
    """`callers` greenlets send PING at once on a connected MuxClient: how many socket
    writes carried them, and whether each got its own reply."""
    client = clients[name]
    client.execute("PING")  # connected
    link = client._link
    sock = link.sock
    writes = []

    class Counting:
        def sendall(self, data):
            writes.append(len(data))
            return sock.sendall(data)

    link.sock = Counting()
    try:
        jobs = [gevent.spawn(client.execute, "ECHO", f"caller-{i}") for i in range(callers)]
        gevent.joinall(jobs, raise_error=True)
    finally:
        link.sock = sock
    return {
        "writes": len(writes),
        "mismatched": [i for i, job in enumerate(jobs) if job.value != f"caller-{i}".encode()],
    }


CALLS = {
    call.__name__: call
    for call in (
        open_client,
        execute,
        run_script,
        opened,
        many_callers,
        pipelined,
        concurrent_outcomes,
        writes_for_callers,
        sleep,
        close_all,
        faststate_scripts,
    )
}


# --- the loop ------------------------------------------------------------------------------


def serve() -> None:
    if not monkey.is_module_patched("socket"):
        sys.exit("run me under gevent: python -m gevent.monkey --module " + __spec__.name)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the answers
    requests = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for line in requests:
        request = json.loads(line)
        try:
            answer = {"value": CALLS[request["call"]](**request.get("kwargs", {}))}
        except Exception as exc:
            traceback.print_exc()
            answer = {
                "error": {
                    "type": type(exc).__name__,
                    "classes": [cls.__name__ for cls in type(exc).__mro__],
                    "message": str(exc),
                }
            }
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    serve()
