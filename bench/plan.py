"""How long and how hard each phase of a bench run goes (bench/run.py --quick halves it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Plan:
    quick: bool
    server: str
    workers: int
    threads: int
    compare: bool
    peers: bool = False  # also measure the LiteLLM proxy (bench/peers.py)

    @property
    def sat_seconds(self) -> float:
        return 5 if self.quick else 10

    @property
    def direct_seconds(self) -> float:
        return 3 if self.quick else 5

    @property
    def sat_connections(self) -> int:
        # Enough that the proxy, not wrk (one thread), limits the run: the report checks it
        # (load generator cores against the proxy's) for every saturated run.
        return 32

    @property
    def single_requests(self) -> int:
        return 300 if self.quick else 1000

    @property
    def rate_seconds(self) -> float:
        return 5 if self.quick else 10

    @property
    def slow_seconds(self) -> float:
        return 8 if self.quick else 16

    @property
    def stream_tokens(self) -> int:
        return 10 if self.quick else 20  # at 2 tokens/s: each held stream lasts 5 or 10 s

    @property
    def quiet_timeout(self) -> float:
        return 3 if self.quick else 10

    @property
    def rollup_events(self) -> int:
        return 100_000 if self.quick else 1_000_000
