"""The gateway benchmark: one command, everything on this machine, torn down at the end.

    .venv/bin/python bench/run.py            # full run, about 5 minutes (up to ~8 on a busy machine)
    .venv/bin/python bench/run.py --quick    # shorter runs, about 2.5 minutes

It creates (or reuses and empties) the Postgres database `portal_bench`, uses Redis
database 2 under the prefix `bench:`, starts a canned near-zero-cost upstream
(bench/upstream.py) and router simulators, seeds them with `manage.py seed_demo` plus
a benchmark plan whose limits every request is checked against but none reaches,
starts the gateway under the production server settings (portal/gunicorn.py), and
compares each gateway figure with the same load sent straight to the upstream's
`/api/v1/completions`. All traffic goes to 127.0.0.1.

Everything runs on the same 2 cores (load generator, upstream, gateway, Postgres,
Redis), so the CPU split of the saturated run is printed with the figures; the
machine's other load is measured during each run and shown as `other`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import load, stack, wrk
from bench.report import report

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
MAX_TOKENS = 16
PROMPT = "<|im_start|>user\nSay hello in one short sentence.<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Plan:
    quick: bool
    server: str
    workers: int
    threads: int
    compare: bool

    @property
    def sat_seconds(self) -> float:
        return 5 if self.quick else 10

    @property
    def direct_seconds(self) -> float:
        return 3 if self.quick else 5

    @property
    def sat_connections(self) -> int:
        return 32

    @property
    def single_requests(self) -> int:
        return 200 if self.quick else 500

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


@dataclass
class Bench:
    plan: Plan
    st: stack.Stack
    api_key: str = ""
    upstreams: dict[str, stack.Proc] = field(default_factory=dict)
    gateway: stack.Proc | None = None
    wrk_bin: str | None = None
    results: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # --- targets ---------------------------------------------------------------------

    def gateway_target(self, model: str, *, stream: bool, gateway: stack.Proc | None = None) -> load.Target:
        host, port = (gateway or self.gateway).url.split("//")[1].rsplit(":", 1)
        body = {"model": model, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
        if stream:
            body["stream"] = True
        return load.Target(
            host, int(port), "/v1/chat/completions", _json(body), {"Authorization": f"Bearer {self.api_key}"}, stream
        )

    def direct_target(self, upstream: str, *, stream: bool) -> load.Target:
        """What the gateway sends the router for the same request (a rendered chat prompt)."""
        host, port = self.upstreams[upstream].url.split("//")[1].rsplit(":", 1)
        body = {
            "prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": stream, "timeout": 120,
            "session_id": 11, "client_reference": "req_benchmarkbenchmarkbench",
        }
        return load.Target(host, int(port), "/api/v1/completions", _json(body), {}, stream)

    # --- measurements ----------------------------------------------------------------

    def own_pids(self) -> list[int]:
        pids = [p for proc in self.st.procs for p in proc.pids()]
        return pids + stack.postgres_pids() + stack.pids_named("redis-server")

    def quiet(self) -> float:
        return stack.wait_for_quiet(self.own_pids, timeout=self.plan.quiet_timeout)

    def meter(self, gateway: stack.Proc | None = None) -> stack.CpuMeter:
        gateway = gateway or self.gateway
        upstreams = list(self.upstreams.values())
        return stack.CpuMeter(
            {
                "gateway": lambda: gateway.pids() if gateway else [],
                "upstream": lambda: [p for u in upstreams for p in u.pids()],
                "postgres": stack.postgres_pids,
                "redis": lambda: stack.pids_named("redis-server"),
                "bench (python)": lambda: [os.getpid()],
            }
        )

    def saturate(
        self, target: load.Target, seconds: float, connections: int | None = None, timeout_s: float = 10,
        gateway: stack.Proc | None = None,
    ):
        """wrk (or the asyncio fallback) plus the CPU split and the machine's other load."""
        self.quiet()
        meter = self.meter(gateway)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter.start()
        run = wrk.saturate(
            self.wrk_bin, target, connections=connections or self.plan.sat_connections, seconds=seconds,
            timeout_s=timeout_s,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = meter.stop({"load generator": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)})
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
        }

    def fixed_rate(self, target: load.Target, rate: float, seconds: float) -> dict:
        self.quiet()
        meter = self.meter()
        meter.start()
        results = asyncio.run(load.fixed_rate(target, rate, seconds))
        cpu = meter.stop()
        good = [r.total for r in results if r.ok]
        return {
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
            worker_class=server, workers=workers, threads=threads, enforcement=enforcement,
        )
        # Warm every worker: connections, the catalog, the key's cached auth context.
        wrk.saturate(self.wrk_bin, self.gateway_target("bench-canned", stream=False), connections=16, seconds=2)
        wrk.saturate(self.wrk_bin, self.gateway_target("bench-canned", stream=True), connections=16, seconds=1)

    def worker_pids(self) -> list[int]:
        return self.gateway.pids()[1:] if self.gateway else []


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the phases ------------------------------------------------------------------------------


def phase_saturated(b: Bench) -> None:
    """Requests/s and p50/p99 at saturation, direct vs gateway, per upstream and mode."""
    out = b.results.setdefault("saturated", {})
    for upstream, model in (("canned", "bench-canned"), ("sim", "bench-sim")):
        for stream in (False, True):
            name = f"{upstream} {'stream' if stream else 'non-stream'}"
            say(f"saturated {name}: direct")
            direct, _ = b.saturate(b.direct_target(upstream, stream=stream), b.plan.direct_seconds)
            # The headline run (canned, non-stream) is repeated in a full run; the one that
            # ran with the least other load on the machine is reported.
            repeats = 3 if (upstream, stream) == ("canned", False) and not b.plan.quick else 1
            runs = []
            for index in range(repeats):
                say(f"saturated {name}: gateway" + (f" ({index + 1} of {repeats})" if repeats > 1 else ""))
                since = int(time.time() * 1000)
                gateway, cpu = b.saturate(b.gateway_target(model, stream=stream), b.plan.sat_seconds)
                runs.append((cpu.get("other", 0), gateway, cpu, stack.request_log_summary(since)))
            _, gateway, cpu, logged = min(runs, key=lambda run: run[0])
            out[name] = {
                "direct": direct.__dict__, "gateway": gateway.__dict__, "cpu": cpu, "logged": logged,
                "all_runs": [(round(run[1].rps), round(run[0], 2)) for run in runs],
            }


def phase_single(b: Bench) -> None:
    """One client, one keep-alive connection: added latency and time to first byte."""
    out = b.results.setdefault("single", {})
    n = b.plan.single_requests
    for upstream, model in (("canned", "bench-canned"), ("sim", "bench-sim")):
        say(f"single client {upstream}: {n} non-stream and {n // 2} stream requests each way")
        # Twice each; the run with the least other load on the machine counts.
        def quietest(target: load.Target, count: int) -> dict:
            return min((b.single(target, count) for _ in range(2)), key=lambda run: run["other"])

        out[upstream] = {
            "direct": quietest(b.direct_target(upstream, stream=False), n),
            "gateway": quietest(b.gateway_target(model, stream=False), n),
            "direct_stream": quietest(b.direct_target(upstream, stream=True), n // 2),
            "gateway_stream": quietest(b.gateway_target(model, stream=True), n // 2),
        }


def phase_fixed_rate(b: Bench, rate: float = 200) -> None:
    say(f"fixed rate {rate:.0f} req/s for {b.plan.rate_seconds:.0f} s: direct, then gateway")
    b.results["rate"] = {
        "rate": rate,
        "direct": b.fixed_rate(b.direct_target("canned", stream=False), rate, b.plan.rate_seconds),
        "gateway": b.fixed_rate(b.gateway_target("bench-canned", stream=False), rate, b.plan.rate_seconds),
    }


def phase_slow_upstream(b: Bench, connections: int = 500) -> None:
    """500 concurrent requests against an upstream that takes 2 s."""
    say(f"{connections} concurrent against the 2 s upstream: direct")
    direct, _ = b.saturate(b.direct_target("slow", stream=False), b.plan.slow_seconds, connections, timeout_s=15)
    say(f"{connections} concurrent against the 2 s upstream: gateway")
    since = int(time.time() * 1000)
    gateway, cpu = b.saturate(b.gateway_target("bench-slow", stream=False), b.plan.slow_seconds, connections, timeout_s=15)
    b.results["slow"] = {
        "connections": connections, "direct": direct.__dict__, "gateway": gateway.__dict__, "cpu": cpu,
        "logged": stack.request_log_summary(since),
    }


def phase_held_streams(b: Bench, count: int = 1000) -> None:
    """1,000 streams open at once through the gateway; the peak memory of each worker."""
    say(f"{count} concurrent streams, {b.plan.stream_tokens} tokens at 2 tokens/s each")
    b.quiet()
    workers = b.worker_pids()
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
    since = int(time.time() * 1000)
    started = time.perf_counter()
    results, most = asyncio.run(load.held_streams(b.gateway_target("bench-stream", stream=True), count, on_tick))
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    errors = [r.error for r in results if not r.ok]
    b.results["streams"] = {
        "count": count,
        "ok": len(results) - len(errors),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "most_in_flight": most,
        "seconds": elapsed,
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        "hwm_mb": {pid: stack.rss_mb(pid)[1] for pid in workers},
        "logged": stack.request_log_summary(since),
    }


def phase_enforcement(b: Bench, rounds: int = 3) -> None:
    """The same server with GATEWAY_ENFORCEMENT=false beside it; short runs alternate
    between the two so a change in the machine's other load hits both alike."""
    say("enforcement on vs off: starting a second gateway with GATEWAY_ENFORCEMENT=false")
    off_gateway = b.st.gateway(
        name=f"gateway-{b.plan.server}-off", worker_class=b.plan.server, workers=b.plan.workers,
        threads=b.plan.threads, enforcement=False,
    )
    off_target = b.gateway_target("bench-canned", stream=False, gateway=off_gateway)
    on_target = b.gateway_target("bench-canned", stream=False)
    wrk.saturate(b.wrk_bin, off_target, connections=16, seconds=2)  # warm
    seconds = max(3.0, b.plan.sat_seconds / 2)
    runs: dict[str, list] = {"on": [], "off": []}
    for index in range(rounds):
        say(f"enforcement on vs off: round {index + 1} of {rounds}")
        runs["on"].append(b.saturate(on_target, seconds))
        runs["off"].append(b.saturate(off_target, seconds, gateway=off_gateway))
    b.st.stop(off_gateway)

    def median(pairs):
        ordered = sorted(pairs, key=lambda pair: pair[0].rps)
        return ordered[len(ordered) // 2]

    on, on_cpu = median(runs["on"])
    off, off_cpu = median(runs["off"])
    # Each round's on/off pair ran back to back: the median of the per-round ratios is the
    # figure least moved by other load that comes and goes.
    ratios = sorted(a[0].rps / c[0].rps for a, c in zip(runs["on"], runs["off"]) if c[0].rps)
    b.results["enforcement"] = {
        "on": on.__dict__, "off": off.__dict__, "on_cpu": on_cpu, "off_cpu": off_cpu,
        "on_all": [run.rps for run, _ in runs["on"]], "off_all": [run.rps for run, _ in runs["off"]],
        "other_all": [round((x[1].get("other", 0) + y[1].get("other", 0)) / 2, 2) for x, y in zip(runs["on"], runs["off"])],
        "ratio": ratios[len(ratios) // 2] * 100 if ratios else float("nan"),
    }


def phase_compare(b: Bench) -> None:
    """The alternative server model (gthread), for the choice of server: same tests."""
    threads = 32
    say(f"server comparison: gthread, {b.plan.workers} workers x {threads} threads")
    b.start_gateway(server="gthread", workers=b.plan.workers, threads=threads, enforcement=True)
    sat, cpu = b.saturate(b.gateway_target("bench-canned", stream=False), b.plan.sat_seconds)
    slow, _ = b.saturate(b.gateway_target("bench-slow", stream=False), b.plan.slow_seconds, 500, timeout_s=15)
    b.results["compare"] = {"server": f"gthread {b.plan.workers}x{threads}", "saturated": sat.__dict__,
                            "cpu": cpu, "slow": slow.__dict__}


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against the simulator and a canned upstream.")
    parser.add_argument("--quick", action="store_true", help="Shorter runs (about 2.5 minutes).")
    parser.add_argument("--server", default="gevent", choices=["gevent", "gthread"],
                        help="Worker class (default gevent, as portal/gunicorn.py).")
    parser.add_argument("--workers", type=int, default=2, help="Gateway worker processes (default 2).")
    parser.add_argument("--threads", type=int, default=32, help="Threads per worker, gthread only.")
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=None,
                        help="Also measure gthread for the server choice (default: on in a full run).")
    parser.add_argument("--json", metavar="FILE", help="Also write every figure as JSON.")
    parser.add_argument("--keep-logs", action="store_true", help="Keep the process logs (printed path).")
    args = parser.parse_args()
    plan = Plan(
        quick=args.quick, server=args.server, workers=args.workers, threads=args.threads,
        compare=(not args.quick) if args.compare is None else args.compare,
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
    started = time.monotonic()
    ok = False
    try:
        say("checking wrk (apt-get install wrk when missing)")
        b.wrk_bin = wrk.ensure_wrk()
        b.results["tool"] = "wrk" if b.wrk_bin else "asyncio (wrk unavailable)"
        if not b.wrk_bin:
            b.notes.append("wrk could not be installed: the Python load generator was used, which costs more CPU")
        say(f"database {stack.DB_NAME} (create, migrate, empty) and Redis {stack.REDIS_URL} ({stack.PREFIX})")
        stack.prepare_database()
        stack.flush_fast_state()
        say("starting upstreams")
        b.upstreams["canned"] = st.canned()
        b.upstreams["sim"] = st.simulator("sim")
        b.upstreams["slow"] = st.simulator("sim-slow", latency_ms=2000)
        b.upstreams["stream"] = st.simulator("sim-stream", completion_tokens=plan.stream_tokens, tokens_per_second=2)
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
        say(f"starting the gateway: gunicorn -c portal/gunicorn.py ({plan.server}, {plan.workers} workers)")
        b.start_gateway(server=plan.server, workers=plan.workers, threads=plan.threads, enforcement=True)

        phase_saturated(b)
        phase_single(b)
        phase_fixed_rate(b)
        phase_slow_upstream(b)
        phase_held_streams(b)
        phase_enforcement(b)
        if plan.compare:
            phase_compare(b)
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
        try:
            stack.flush_fast_state()
        except Exception:  # Redis gone: nothing left to clean
            pass
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
