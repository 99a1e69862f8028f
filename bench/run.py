"""The gateway benchmark: one command, everything on this machine, torn down at the end.

    .venv/bin/python bench/run.py [--quick] [--peers]   # bench/README.md: what each phase measures

It creates (or reuses and empties) the Postgres database `portal_bench`, uses Redis
database 2 under the prefix `bench:`, starts canned near-zero-cost upstreams
(bench/upstream.py: instant, 2 s, paced streams) and a router simulator, seeds them,
starts the gateway under the production server settings (portal/gunicorn.py) and, with
--peers, the LiteLLM proxy (bench/peers.py) on the same upstreams, and compares each
figure with the same load sent straight to the upstream. All traffic goes to 127.0.0.1;
everything shares the machine's cores, so each run's CPU split and the machine's other
load (`other`) are printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import compare, load, peers, stack, wrk
from bench.phases import (
    phase_compare,
    phase_enforcement,
    phase_fixed_rate,
    phase_held_streams,
    phase_rollups,
    phase_saturated,
    phase_single,
    phase_slow_upstream,
    phase_tools,
    say,
)
from bench.plan import Plan
from bench.report import report

PHASES = {
    "saturated": phase_saturated,
    "single": phase_single,
    "fixed-rate": phase_fixed_rate,
    "slow-upstream": phase_slow_upstream,
    "held-streams": phase_held_streams,
    "enforcement": phase_enforcement,
    "tools": phase_tools,
    "compare": phase_compare,
    "rollups": phase_rollups,
}

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
MAX_TOKENS = 16
PROMPT = "<|im_start|>user\nSay hello in one short sentence.<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Bench:
    plan: Plan
    st: stack.Stack
    api_key: str = ""
    upstreams: dict[str, stack.Proc] = field(default_factory=dict)
    gateway: stack.Proc | None = None
    peer: stack.Proc | None = None  # the LiteLLM proxy, with --peers
    wrk_bin: str | None = None
    results: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # --- targets ---------------------------------------------------------------------

    def gateway_target(
        self,
        model: str,
        *,
        stream: bool,
        gateway: stack.Proc | None = None,
        tools: list | None = None,
    ) -> load.Target:
        host, port = (gateway or self.gateway).url.split("//")[1].rsplit(":", 1)
        body = {"model": model, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
        if stream:
            body["stream"] = True
        if tools:
            body.update(
                messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                tools=tools,
                max_tokens=64,
            )
        return load.Target(
            host,
            int(port),
            "/v1/chat/completions",
            _json(body),
            {"Authorization": f"Bearer {self.api_key}"},
            stream,
        )

    def peer_target(self, model: str, *, stream: bool) -> load.Target:
        """The same chat request to the LiteLLM proxy, with its master key."""
        target = self.gateway_target(model, stream=stream, gateway=self.peer)
        return replace(target, headers={"Authorization": f"Bearer {peers.MASTER_KEY}"})

    def direct_target(self, upstream: str, *, stream: bool, prompt: str = PROMPT) -> load.Target:
        """What the gateway sends the router for the same request (a rendered chat prompt)."""
        host, port = self.upstreams[upstream].url.split("//")[1].rsplit(":", 1)
        body = {
            "prompt": prompt,
            "max_tokens": MAX_TOKENS if prompt == PROMPT else 64,
            "stream": stream,
            "timeout": 120,
            "session_id": 11,
            "client_reference": "req_benchmarkbenchmarkbench",
        }
        return load.Target(host, int(port), "/api/v1/completions", _json(body), {}, stream)

    # --- measurements ----------------------------------------------------------------

    def own_pids(self) -> list[int]:
        pids = [p for proc in self.st.procs for p in proc.pids()]
        return pids + stack.postgres_pids() + stack.pids_named("redis-server")

    def quiet(self) -> float:
        return stack.wait_for_quiet(self.own_pids, timeout=self.plan.quiet_timeout)

    def meter(self, gateway: stack.Proc | None = None, label: str = "gateway") -> stack.CpuMeter:
        gateway = gateway or self.gateway
        upstreams = list(self.upstreams.values())
        return stack.CpuMeter(
            {
                label: lambda: gateway.pids() if gateway else [],
                "upstream": lambda: [p for u in upstreams for p in u.pids()],
                "postgres": stack.postgres_pids,
                "redis": lambda: stack.pids_named("redis-server"),
                "bench (python)": lambda: [os.getpid()],
            }
        )

    def saturate(
        self,
        target: load.Target,
        seconds: float,
        connections: int | None = None,
        timeout_s: float = 10,
        gateway: stack.Proc | None = None,
        label: str = "gateway",
    ):
        """wrk (or the asyncio fallback) plus the CPU split and the machine's other load;
        `label` names the proxy's processes in the split (LiteLLM's: "litellm")."""
        self.quiet()
        meter = self.meter(gateway, label)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter.start()
        run = wrk.saturate(
            self.wrk_bin,
            target,
            connections=connections or self.plan.sat_connections,
            seconds=seconds,
            timeout_s=timeout_s,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = meter.stop(
            {
                "load generator": (after.ru_utime + after.ru_stime)
                - (before.ru_utime + before.ru_stime)
            }
        )
        return run, cpu

    def single(self, target: load.Target, count: int) -> dict:
        self.quiet()
        meter = self.meter()
        meter.start()
        results = asyncio.run(load.sequential(target, count))
        other = meter.stop()["other"]
        good = [r for r in results if r.ok]
        return {
            "other": other,
            "p50_ms": load.percentile([r.total for r in good], 50) * 1000,
            "p99_ms": load.percentile([r.total for r in good], 99) * 1000,
            "ttfb_p50_ms": load.percentile([r.ttfb for r in good], 50) * 1000,
            "ttfb_p99_ms": load.percentile([r.ttfb for r in good], 99) * 1000,
            "errors": len(results) - len(good),
            "totals": [r.total for r in good],
            "ttfbs": [r.ttfb for r in good],
        }

    def fixed_rate(self, target: load.Target, rate: float, seconds: float) -> dict:
        self.quiet()
        meter = self.meter()
        meter.start()
        results = asyncio.run(load.fixed_rate(target, rate, seconds))
        cpu = meter.stop()
        good = [r.total for r in results if r.ok]
        kinds: dict[str, int] = {}
        for r in results:
            if not r.ok:
                kind = r.error or f"HTTP {r.status}"
                kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "error_kinds": kinds,
            "cpu": cpu,
            "p50_ms": load.percentile(good, 50) * 1000,
            "p99_ms": load.percentile(good, 99) * 1000,
            "errors": len(results) - len(good),
            "requests": len(results),
        }

    # --- lifecycle -------------------------------------------------------------------

    def start_gateway(self, *, server: str, workers: int, threads: int, enforcement: bool) -> None:
        if self.gateway is not None:
            self.st.stop(self.gateway)
        self.gateway = self.st.gateway(
            name=f"gateway-{server}-{'on' if enforcement else 'off'}",
            worker_class=server,
            workers=workers,
            threads=threads,
            enforcement=enforcement,
        )
        # Warm every worker: connections, the catalog, the key's cached auth context.
        wrk.saturate(
            self.wrk_bin,
            self.gateway_target("bench-canned", stream=False),
            connections=16,
            seconds=2,
        )
        wrk.saturate(
            self.wrk_bin,
            self.gateway_target("bench-canned", stream=True),
            connections=16,
            seconds=1,
        )

    def worker_pids(self) -> list[int]:
        return self.gateway.pids()[1:] if self.gateway else []


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the gateway against the simulator and a canned upstream."
    )
    parser.add_argument("--quick", action="store_true", help="Shorter runs (about 2.5 minutes).")
    parser.add_argument(
        "--server",
        default="gevent",
        choices=sorted(stack.WORKER_CLASSES),
        help="Worker class (default gevent, as portal/gunicorn.py).",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="Gateway worker processes (default 2)."
    )
    parser.add_argument("--threads", type=int, default=32, help="Threads per worker, gthread only.")
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Also measure gunicorn's gevent_pywsgi and gthread workers, for the server choice "
        "(default: on in a full run).",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="Also measure the LiteLLM proxy on the same upstreams, side by side with the "
        "ratios (installs it once into bench/.peers/litellm).",
    )
    parser.add_argument("--json", metavar="FILE", help="Also write every figure as JSON.")
    parser.add_argument(
        "--keep-logs", action="store_true", help="Keep the process logs (printed path)."
    )
    parser.add_argument(
        "--only",
        metavar="PHASE,...",
        default="",
        help=f"Run only these phases ({', '.join(PHASES)}); the report leaves the rest out.",
    )
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    plan = Plan(
        quick=args.quick,
        server=args.server,
        workers=args.workers,
        threads=args.threads,
        compare=(not args.quick) if args.compare is None else args.compare,
        peers=args.peers,
    )

    # 1,000 held streams need more descriptors than the usual soft limit of 1,024, here and in
    # the processes started below (they inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 65536:
        hard = 65536
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logdir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    st = stack.Stack(logdir=logdir)
    b = Bench(plan=plan, st=st)
    b.results["machine"] = compare.machine_info()
    started = time.monotonic()
    ok = False
    try:
        say("checking wrk (apt-get install wrk when missing)")
        b.wrk_bin = wrk.ensure_wrk()
        b.results["tool"] = "wrk" if b.wrk_bin else "asyncio (wrk unavailable)"
        if not b.wrk_bin:
            b.notes.append(
                "wrk could not be installed: the Python load generator was used, which costs more CPU"
            )
        say(
            f"database {stack.DB_NAME} (create, migrate, empty) and Redis {stack.REDIS_URL} ({stack.PREFIX})"
        )
        stack.prepare_database()
        stack.flush_fast_state()
        say("starting upstreams")
        b.upstreams["canned"] = st.canned()
        b.upstreams["sim"] = st.simulator("sim")
        # The 2 s and held-stream upstreams are bench/upstream.py too: it also speaks the
        # OpenAI chat API, so direct calls, the Portal and LiteLLM share each upstream.
        b.upstreams["slow"] = st.canned("canned-slow", latency_ms=2000)
        b.upstreams["stream"] = st.canned(
            "canned-stream", tokens=plan.stream_tokens, tokens_per_second=2
        )
        say("seeding (seed_demo --router-url ... --json, then the bench plan and models)")
        demo = stack.seed(
            b.upstreams["sim"].url,
            {
                "bench-canned": b.upstreams["canned"].url,
                "bench-sim": b.upstreams["sim"].url,
                "bench-slow": b.upstreams["slow"].url,
                "bench-stream": b.upstreams["stream"].url,
            },
        )
        b.api_key = demo["api_key"]
        say(
            f"starting the gateway: gunicorn -c portal/gunicorn.py ({plan.server}, {plan.workers} workers)"
        )
        b.start_gateway(
            server=plan.server, workers=plan.workers, threads=plan.threads, enforcement=True
        )
        if plan.peers:
            peers.start_peer(b, say)

        for name, phase in PHASES.items():
            if name in only or (not only and (name != "compare" or plan.compare)):
                stack.settle_database()
                phase(b)
        ok = True
    except KeyboardInterrupt:
        say("interrupted")
    except Exception as exc:  # report what was measured, then the failure
        say(f"FAILED: {exc!r}")
        b.notes.append(f"the run stopped early: {exc!r}")
        import traceback

        traceback.print_exc()
    finally:
        say("tearing down")
        st.stop_all()
        with contextlib.suppress(Exception):  # Redis gone: nothing left to clean
            stack.flush_fast_state()
    b.results["seconds"] = time.monotonic() - started
    report(b)
    if args.json:
        Path(args.json).write_text(json.dumps(b.results, indent=2, default=str))
    if args.keep_logs or not ok:
        print(f"\n(total {b.results['seconds']:.0f} s; process logs kept in {logdir})", flush=True)
    else:
        print(f"\n(total {b.results['seconds']:.0f} s)", flush=True)
        for log in logdir.iterdir():
            log.unlink()
        logdir.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
