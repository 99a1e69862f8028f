"""A Cortensor router simulator for development, the demo, end-to-end tests and benchmarks.

It speaks the router contract in ROUTER_API.md (completions, streaming, health) on plain
asyncio, with knobs for latency, time to first token, pacing, failures and mid-stream
disconnects, and a `/_sim/` control API (stats, live config, reset). A prompt that carries
tool definitions or an output format gets a call in its family's syntax or a JSON object
(structured.py), spoilt on request for the gateway's error paths. Run it with
`manage.py simulate_router`, or in tests with `start_in_thread(**knobs)`.
"""

from .config import SimConfig, config_update
from .runner import run, start_in_thread
from .server import RouterSimulator

__all__ = ["RouterSimulator", "SimConfig", "config_update", "run", "start_in_thread"]
