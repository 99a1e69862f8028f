"""The benchmark's phases: each measures one target, direct and through the gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from bench import load, stack, wrk

if TYPE_CHECKING:
    from bench.run import Bench


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def phase_saturated(b: Bench) -> None:
    """Requests/s and p50/p99 at saturation, direct vs gateway (and LiteLLM on the canned
    upstream, with --peers, each LiteLLM run right after a gateway run), per upstream and mode."""
    out = b.results.setdefault("saturated", {})
    for upstream, model in (("canned", "bench-canned"), ("sim", "bench-sim")):
        for stream in (False, True):
            name = f"{upstream} {'stream' if stream else 'non-stream'}"
            say(f"saturated {name}: direct")
            direct, _ = b.saturate(b.direct_target(upstream, stream=stream), b.plan.direct_seconds)
            # The headline run (canned, non-stream) is repeated in a full run; the one that
            # ran with the least other load on the machine is reported (for LiteLLM too).
            repeats = 3 if (upstream, stream) == ("canned", False) and not b.plan.quick else 1
            runs, peer_runs = [], []
            for index in range(repeats):
                of = f" ({index + 1} of {repeats})" if repeats > 1 else ""
                say(f"saturated {name}: gateway{of}")
                since = int(time.time() * 1000)
                gateway, cpu = b.saturate(
                    b.gateway_target(model, stream=stream), b.plan.sat_seconds
                )
                runs.append((cpu.get("other", 0), gateway, cpu, stack.request_log_summary(since)))
                if b.peer and upstream == "canned":
                    say(f"saturated {name}: LiteLLM{of}")
                    run, cpu = b.saturate(
                        b.peer_target(model, stream=stream),
                        b.plan.sat_seconds,
                        gateway=b.peer,
                        label="litellm",
                    )
                    peer_runs.append((cpu.get("other", 0), run, cpu))
            _, gateway, cpu, logged = min(runs, key=lambda run: run[0])
            out[name] = {
                "direct": direct.__dict__,
                "gateway": gateway.__dict__,
                "cpu": cpu,
                "logged": logged,
                "all_runs": [(round(run[1].rps), round(run[0], 2)) for run in runs],
            }
            if peer_runs:
                _, run, cpu = min(peer_runs, key=lambda run: run[0])
                out[name].update(
                    litellm=run.__dict__,
                    litellm_cpu=cpu,
                    litellm_all_runs=[(round(r[1].rps), round(r[0], 2)) for r in peer_runs],
                )


def phase_single(b: Bench, blocks: int = 5) -> None:
    """One client, one keep-alive connection: added latency and time to first byte.

    A single client's latency is mostly the machine waking processes up, which drifts
    over seconds on a shared 2-core machine; so direct and gateway requests alternate in
    `blocks` short blocks each, and each p50 is the median of its blocks' p50s (p99 over
    all of them): a drift then moves both sides alike."""
    out = b.results.setdefault("single", {})
    n = b.plan.single_requests
    for upstream, model in (("canned", "bench-canned"), ("sim", "bench-sim")):
        say(
            f"single client {upstream}: {n} non-stream and {n // 2} stream requests each way, in {blocks} blocks"
        )
        kinds = {
            "direct": (b.direct_target(upstream, stream=False), n),
            "gateway": (b.gateway_target(model, stream=False), n),
            "direct_stream": (b.direct_target(upstream, stream=True), n // 2),
            "gateway_stream": (b.gateway_target(model, stream=True), n // 2),
        }
        if b.peer and upstream == "canned":
            kinds["litellm"] = (b.peer_target(model, stream=False), n)
            kinds["litellm_stream"] = (b.peer_target(model, stream=True), n // 2)
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(blocks):
            for kind, (target, count) in kinds.items():
                runs[kind].append(b.single(target, max(1, count // blocks)))
        out[upstream] = {kind: _combine(block_runs) for kind, block_runs in runs.items()}


def _combine(blocks: list[dict]) -> dict:
    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    totals = [t for run in blocks for t in run["totals"]]
    ttfbs = [t for run in blocks for t in run["ttfbs"]]
    return {
        "other": max(run["other"] for run in blocks),
        "p50_ms": median([run["p50_ms"] for run in blocks]),
        "p99_ms": load.percentile(totals, 99) * 1000 if totals else float("nan"),
        "ttfb_p50_ms": median([run["ttfb_p50_ms"] for run in blocks]),
        "ttfb_p99_ms": load.percentile(ttfbs, 99) * 1000 if ttfbs else float("nan"),
        "errors": sum(run["errors"] for run in blocks),
        "blocks_p50_ms": [round(run["p50_ms"], 3) for run in blocks],
    }


def phase_fixed_rate(b: Bench, rate: float = 200) -> None:
    say(f"fixed rate {rate:.0f} req/s for {b.plan.rate_seconds:.0f} s: direct, then gateway")
    b.results["rate"] = {
        "rate": rate,
        "direct": b.fixed_rate(b.direct_target("canned", stream=False), rate, b.plan.rate_seconds),
        "gateway": b.fixed_rate(
            b.gateway_target("bench-canned", stream=False), rate, b.plan.rate_seconds
        ),
    }


def phase_slow_upstream(b: Bench, connections: int = 500) -> None:
    """500 concurrent requests against an upstream that takes 2 s."""
    say(f"{connections} concurrent against the 2 s upstream: direct")
    direct, _ = b.saturate(
        b.direct_target("slow", stream=False), b.plan.slow_seconds, connections, timeout_s=15
    )
    say(f"{connections} concurrent against the 2 s upstream: gateway")
    since = int(time.time() * 1000)
    gateway, cpu = b.saturate(
        b.gateway_target("bench-slow", stream=False), b.plan.slow_seconds, connections, timeout_s=15
    )
    b.results["slow"] = {
        "connections": connections,
        "direct": direct.__dict__,
        "gateway": gateway.__dict__,
        "cpu": cpu,
        "logged": stack.request_log_summary(since),
    }
    if b.peer:
        say(f"{connections} concurrent against the 2 s upstream: LiteLLM")
        peer, peer_cpu = b.saturate(
            b.peer_target("bench-slow", stream=False),
            b.plan.slow_seconds,
            connections,
            timeout_s=15,
            gateway=b.peer,
            label="litellm",
        )
        b.results["slow"].update(litellm=peer.__dict__, litellm_cpu=peer_cpu)


def phase_held_streams(b: Bench, count: int = 1000) -> None:
    """1,000 streams open at once through the gateway (and LiteLLM, with --peers); the
    peak memory of each worker."""
    say(f"{count} concurrent streams, {b.plan.stream_tokens} tokens at 2 tokens/s each")
    since = int(time.time() * 1000)
    b.results["streams"] = _held(b, b.gateway_target("bench-stream", stream=True), count)
    b.results["streams"]["logged"] = stack.request_log_summary(since)
    if b.peer:
        say(f"{count} concurrent streams: LiteLLM")
        target = b.peer_target("bench-stream", stream=True)
        b.results["streams_litellm"] = _held(b, target, count, b.peer.pids()[1:])


def _held(b: Bench, target: load.Target, count: int, workers: list[int] | None = None) -> dict:
    b.quiet()
    workers = b.worker_pids() if workers is None else workers
    idle = {pid: stack.rss_mb(pid)[0] for pid in workers}
    peak = dict(idle)
    samples: list[int] = []

    def on_tick(in_flight: int) -> None:
        samples.append(in_flight)
        for pid in workers:
            peak[pid] = max(peak[pid], stack.rss_mb(pid)[0])

    # Sample memory on a thread too, so a busy event loop does not miss the peak.
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            for pid in workers:
                peak[pid] = max(peak[pid], stack.rss_mb(pid)[0])
            time.sleep(0.05)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    started = time.perf_counter()
    results, most = asyncio.run(load.held_streams(target, count, on_tick))
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    errors = [r.error for r in results if not r.ok]
    return {
        "count": count,
        "ok": len(results) - len(errors),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "most_in_flight": most,
        "seconds": elapsed,
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        "hwm_mb": {pid: stack.rss_mb(pid)[1] for pid in workers},
    }


def phase_enforcement(b: Bench) -> None:
    """The same server with GATEWAY_ENFORCEMENT=false beside it; short runs alternate
    between the two so a change in the machine's other load hits both alike, and which
    goes first alternates too (what one run leaves behind, such as autovacuum of the rows
    it wrote, lands on the other side as often as on its own)."""
    rounds = 3 if b.plan.quick and not b.plan.peers else 5  # the ratio targets: >= 5 rounds
    say("enforcement on vs off: starting a second gateway with GATEWAY_ENFORCEMENT=false")
    off_gateway = b.st.gateway(
        name=f"gateway-{b.plan.server}-off",
        worker_class=b.plan.server,
        workers=b.plan.workers,
        threads=b.plan.threads,
        enforcement=False,
    )
    off_target = b.gateway_target("bench-canned", stream=False, gateway=off_gateway)
    on_target = b.gateway_target("bench-canned", stream=False)
    wrk.saturate(b.wrk_bin, off_target, connections=16, seconds=2)  # warm
    seconds = max(3.0, b.plan.sat_seconds / 2)
    runs: dict[str, list] = {"on": [], "off": []}
    for index in range(rounds):
        say(f"enforcement on vs off: round {index + 1} of {rounds}")
        for side in ("on", "off") if index % 2 == 0 else ("off", "on"):
            if side == "on":
                runs["on"].append(b.saturate(on_target, seconds))
            else:
                runs["off"].append(b.saturate(off_target, seconds, gateway=off_gateway))
    b.st.stop(off_gateway)

    def median(pairs):
        ordered = sorted(pairs, key=lambda pair: pair[0].rps)
        return ordered[len(ordered) // 2]

    on, on_cpu = median(runs["on"])
    off, off_cpu = median(runs["off"])
    # Each round's on/off pair ran back to back: the median of the per-round ratios is the
    # figure least moved by other load that comes and goes.
    ratios = sorted(
        a[0].rps / c[0].rps for a, c in zip(runs["on"], runs["off"], strict=True) if c[0].rps
    )
    b.results["enforcement"] = {
        "on": on.__dict__,
        "off": off.__dict__,
        "on_cpu": on_cpu,
        "off_cpu": off_cpu,
        "on_all": [run.rps for run, _ in runs["on"]],
        "off_all": [run.rps for run, _ in runs["off"]],
        # Refusals answer fast: a round with errors is no measure of the checks' cost.
        "errors": sum(run.errors for side in runs.values() for run, _ in side),
        "other_all": [
            round((x[1].get("other", 0) + y[1].get("other", 0)) / 2, 2)
            for x, y in zip(runs["on"], runs["off"], strict=True)
        ],
        "ratio": ratios[len(ratios) // 2] * 100 if ratios else float("nan"),
    }


def phase_compare(b: Bench) -> None:
    """The alternative server models, for the choice of server: saturated throughput, one
    client's latency and 500 concurrent requests on the 2 s upstream, each as measured for
    production's server."""
    out = b.results.setdefault("compare", [])
    threads = 32
    for server in ("gevent-pywsgi", "gthread"):
        label = (
            f"{server} {b.plan.workers}x{threads}"
            if server == "gthread"
            else f"{server} x{b.plan.workers}"
        )
        say(f"server comparison: {label}")
        b.start_gateway(server=server, workers=b.plan.workers, threads=threads, enforcement=True)
        sat, cpu = b.saturate(b.gateway_target("bench-canned", stream=False), b.plan.sat_seconds)
        single = b.single(
            b.gateway_target("bench-canned", stream=False), b.plan.single_requests // 2
        )
        single.pop("totals"), single.pop("ttfbs")
        slow, _ = b.saturate(
            b.gateway_target("bench-slow", stream=False), b.plan.slow_seconds, 500, timeout_s=15
        )
        out.append(
            {
                "server": label,
                "saturated": sat.__dict__,
                "cpu": cpu,
                "single": single,
                "slow": slow.__dict__,
            }
        )


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]


def phase_tools(b: Bench, blocks: int = 5) -> None:
    """One client: a request that offers a tool and gets a call back (rendered into the
    prompt, read back out of the answer, checked against the strict schema), next to the
    same router call made directly with the prompt the gateway renders."""
    from gateway.conversation import Tool
    from gateway.templates import render_prompt

    tool = TOOLS[0]["function"]
    prompt = render_prompt(
        "chatml",
        [{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            Tool(
                name=tool["name"],
                description=tool["description"],
                parameters=tool["parameters"],
                strict=True,
            )
        ],
    )
    n = b.plan.single_requests
    say(f"tool call round trip: {n} requests each way, in {blocks} blocks")
    kinds = {
        "direct": b.direct_target("sim", stream=False, prompt=prompt),
        "gateway": b.gateway_target("bench-sim", stream=False, tools=TOOLS),
        "gateway_stream": b.gateway_target("bench-sim", stream=True, tools=TOOLS),
    }
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(blocks):
        for kind, target in kinds.items():
            runs[kind].append(b.single(target, max(1, n // blocks)))
    b.results["tools"] = {kind: _combine(block_runs) for kind, block_runs in runs.items()}


def phase_rollups(b: Bench) -> None:
    """Usage rollups over synthetic events: bench/rollup.py, in its own database."""
    events = b.plan.rollup_events
    say(f"rollups over {events:,} usage events (bench/rollup.py, 1 worker)")
    b.quiet()
    done = subprocess.run(
        [
            stack.PY,
            str(stack.ROOT / "bench" / "rollup.py"),
            "--events",
            str(events),
            "--records",
            "200",
        ],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench/rollup.py failed:\n{(done.stderr or done.stdout)[-3000:]}")
    figures = json.loads(lines[-1])
    b.results["rollups"] = {**figures["rollup"], "ok": figures["check"]["ok"]}
