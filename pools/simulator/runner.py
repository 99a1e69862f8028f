"""Ways to run the simulator: in the foreground (`run`) or on a background thread (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from .config import SimConfig, config_update
from .server import RouterSimulator


def run(config: SimConfig, *, out: TextIO = sys.stdout) -> None:
    """Serve until SIGINT or SIGTERM, after printing the `listening on` line scripts wait for."""
    _raise_open_files_limit()
    try:
        import uvloop  # optional: faster when installed, never required
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve_until_signal(config, out))


async def _serve_until_signal(config: SimConfig, out: TextIO) -> None:
    simulator = RouterSimulator(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, simulator.stop)

    def announce(host: str, port: int) -> None:
        out.write(f"simulate_router listening on {base_url(host, port)}\n")
        out.flush()

    await simulator.serve(on_listening=announce)


def start_in_thread(**knobs: Any) -> tuple[str, Callable[[], None]]:
    """Run a simulator on its own thread and event loop; returns `(base_url, stop)`.

    Knobs are `SimConfig` fields (`latency_ms=50`, `sessions=[1, 2]`, ...); the port
    defaults to a free one.
    """
    host = knobs.pop("host", "127.0.0.1")
    port = knobs.pop("port", 0)
    simulator = RouterSimulator(config_update(SimConfig(host=host, port=port), knobs))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: dict[str, Any] = {}

    def on_listening(host: str, port: int) -> None:
        bound["url"] = base_url(host, port)
        ready.set()

    def serve() -> None:
        try:
            loop.run_until_complete(simulator.serve(on_listening=on_listening))
        except BaseException as exc:  # surfaced to the caller below
            bound["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="router-simulator", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("router simulator did not start within 10 s")
    if "error" in bound:
        raise bound["error"]

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(simulator.stop)
            thread.join(timeout=10)

    return bound["url"], stop


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _raise_open_files_limit() -> None:
    """Thousands of concurrent streams need thousands of descriptors."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
