"""The benchmark's printed report and its verdict on each target (bench/run.py runs it)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from bench import compare

if TYPE_CHECKING:
    from bench.run import Bench


def _f(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN check


def _cpu(cpu: dict) -> str:
    return ", ".join(f"{name} {cores:.2f}" for name, cores in cpu.items() if cores >= 0.005)


def report(b: Bench) -> list[tuple[str, str, str, bool | None]]:
    r = b.results
    lines = []
    p = lines.append
    plan = b.plan
    p("")
    p(
        f"Cortensor Portal gateway benchmark ({'quick' if plan.quick else 'full'}) — {time.strftime('%Y-%m-%d %H:%M')}"
    )
    from bench.stack import WORKER_CLASSES

    p(
        f"server: gunicorn {WORKER_CLASSES[plan.server]}, {plan.workers} workers"
        + (f" x {plan.threads} threads" if plan.server == "gthread" else "")
        + f"; machine: {os.cpu_count()} cores; load generator: {r.get('tool', '?')}; "
        "enforcement on, durable writes (Postgres, synchronous commit)"
    )
    m = r.get("machine", {})
    p(
        f"machine: {m.get('nproc', '?')} cores, {m.get('cpu', '?')}; commit {m.get('commit', '?')}; "
        f"{m.get('date', '?')}"
    )
    p("")
    p(
        f"1. Saturated throughput ({plan.sat_connections:d} keep-alive connections), direct to the upstream vs through the gateway"
    )
    p(
        f"   {'upstream / mode':<22}{'direct req/s':>13}{'gateway req/s':>15}{'gw p50 ms':>11}{'gw p99 ms':>11}"
        f"{'direct p50':>12}{'errors':>8}{'logged':>8}{'other':>7}"
    )
    for name, row in r.get("saturated", {}).items():
        d, g = row["direct"], row["gateway"]
        p(
            f"   {name:<22}{_f(d['rps'], 0):>13}{_f(g['rps'], 0):>15}{_f(g['p50_ms'], 2):>11}{_f(g['p99_ms'], 2):>11}"
            f"{_f(d['p50_ms'], 2):>12}{g['errors']:>8}{row['logged']['logged']:>8}{row['cpu'].get('other', 0):>7.2f}"
        )
    canned = r.get("saturated", {}).get("canned non-stream")
    if canned:
        if len(canned.get("all_runs", [])) > 1:
            p(
                "   canned non-stream gateway runs (req/s @ other load): "
                + ", ".join(f"{rps} @ {other:.2f}" for rps, other in canned["all_runs"])
                + "; the quietest is shown"
            )
        p(f"   CPU cores during the gateway run (canned non-stream): {_cpu(canned['cpu'])}")
        rps = canned["gateway"]["rps"]
        if rps:
            per = {
                name: cores / rps * 1000 for name, cores in canned["cpu"].items() if name != "other"
            }
            total = sum(per.values())
            p(
                "   CPU ms per request: "
                + ", ".join(f"{name} {ms:.2f}" for name, ms in per.items() if ms >= 0.005)
                + f"; all of it {total:.2f} ms"
            )
            p(
                f"   => with both cores free for it, this setup would saturate near {2000 / total:.0f} req/s "
                f"(2 cores x 1000 ms / {total:.2f} ms)"
            )
    for name, row in r.get("saturated", {}).items():
        if row.get("litellm"):
            lite = row["litellm"]
            p(
                f"   {name}, LiteLLM: {_f(lite['rps'], 0)} req/s, p50 {_f(lite['p50_ms'], 2)} ms, "
                f"p99 {_f(lite['p99_ms'], 2)} ms, errors {lite['errors']}; CPU: {_cpu(row['litellm_cpu'])}"
            )
            if len(row.get("litellm_all_runs", [])) > 1:
                p(
                    f"   {name}, LiteLLM runs (req/s @ other load): "
                    + ", ".join(f"{rps} @ {other:.2f}" for rps, other in row["litellm_all_runs"])
                    + "; the quietest is shown"
                )
    lines.extend(compare.bottleneck_lines(r.get("saturated", {})))
    p(
        "   (other: cores used by processes outside the benchmark during the gateway run; logged: request-log rows"
        " written durably during it)"
    )
    p("")
    p(
        "2. One client, one keep-alive connection (ms): latency and time to first byte, added by the gateway"
    )
    p(
        f"   {'upstream':<10}{'direct p50':>11}{'gw p50':>9}{'added p50':>11}{'direct p99':>12}{'gw p99':>9}"
        f"{'added p99':>11}{'TTFB direct':>13}{'TTFB gw':>9}{'added':>8}"
    )
    for upstream, row in r.get("single", {}).items():
        d, g, ds, gs = row["direct"], row["gateway"], row["direct_stream"], row["gateway_stream"]
        p(
            f"   {upstream:<10}{_f(d['p50_ms'], 2):>11}{_f(g['p50_ms'], 2):>9}{_f(g['p50_ms'] - d['p50_ms'], 2):>11}"
            f"{_f(d['p99_ms'], 2):>12}{_f(g['p99_ms'], 2):>9}{_f(g['p99_ms'] - d['p99_ms'], 2):>11}"
            f"{_f(ds['ttfb_p50_ms'], 2):>13}{_f(gs['ttfb_p50_ms'], 2):>9}{_f(gs['ttfb_p50_ms'] - ds['ttfb_p50_ms'], 2):>8}"
        )
    for upstream, row in r.get("single", {}).items():
        if "blocks_p50_ms" in row["gateway"]:
            p(
                f"   {upstream}: p50 of each block, direct "
                + " ".join(f"{v:.2f}" for v in row["direct"]["blocks_p50_ms"])
                + "; gateway "
                + " ".join(f"{v:.2f}" for v in row["gateway"]["blocks_p50_ms"])
            )
    p(
        "   (direct and gateway alternate in blocks; each p50 is the median of its blocks' p50s, p99 over all)"
    )
    p(
        "   (TTFB: stream request sent -> first body byte, p50; errors: "
        + ", ".join(f"{u} {sum(v[k]['errors'] for k in v)}" for u, v in r.get("single", {}).items())
        + "; other load during the gateway runs: "
        + ", ".join(
            f"{u} {v['gateway']['other']:.2f}/{v['gateway_stream']['other']:.2f} cores"
            for u, v in r.get("single", {}).items()
        )
        + ")"
    )
    tools = r.get("tools")
    if tools:
        d, g, gs = tools["direct"], tools["gateway"], tools["gateway_stream"]
        p("")
        p(
            "2b. Tool call round trip, one client (ms): a strict function tool offered, a call read back"
        )
        p(
            f"   direct p50 {_f(d['p50_ms'], 2)}, gateway p50 {_f(g['p50_ms'], 2)} (added {_f(g['p50_ms'] - d['p50_ms'], 2)}), "
            f"streamed p50 {_f(gs['p50_ms'], 2)}; errors {d['errors'] + g['errors'] + gs['errors']}"
        )
    rate = r.get("rate")
    if rate:
        d, g = rate["direct"], rate["gateway"]
        p("")
        p(
            f"3. Fixed rate {rate['rate']:.0f} req/s, canned upstream, latency from each request's scheduled start (ms)"
        )
        p(
            f"   direct p50 {_f(d['p50_ms'], 2)}  p99 {_f(d['p99_ms'], 2)};  gateway p50 {_f(g['p50_ms'], 2)}  "
            f"p99 {_f(g['p99_ms'], 2)};  added p50 {_f(g['p50_ms'] - d['p50_ms'], 2)}  p99 {_f(g['p99_ms'] - d['p99_ms'], 2)};"
            f"  errors {g['errors']} of {g['requests']}"
            + (
                f" ({', '.join(f'{k}: {n}' for k, n in g['error_kinds'].items())})"
                if g.get("error_kinds")
                else ""
            )
        )
        p(f"   CPU during the gateway run: {_cpu(g['cpu'])}")
    slow = r.get("slow")
    if slow:
        d, g = slow["direct"], slow["gateway"]
        n = slow["connections"]
        share = _slow_share(slow)
        p("")
        p(f"4. {n} concurrent requests (closed loop) against a 2 s upstream")
        p(
            f"   direct:  {_f(d['rps'])} req/s counted, {_f(n / d['avg_ms'] * 1000)} req/s sustained (connections / mean "
            f"latency), p50 {_f(d['p50_ms'], 0)} ms, p99 {_f(d['p99_ms'], 0)} ms"
        )
        p(
            f"   gateway: {_f(g['rps'])} req/s counted, {_f(n / g['avg_ms'] * 1000)} req/s sustained, p50 {_f(g['p50_ms'], 0)} ms, "
            f"p99 {_f(g['p99_ms'], 0)} ms, errors {g['errors']}: {share:.1f}% of direct (sustained)"
        )
        p(f"   CPU during the gateway run: {_cpu(slow['cpu'])}")
    streams = r.get("streams")
    if streams:
        p("")
        p(
            f"5. {streams['count']} concurrent streams held through the gateway "
            f"({plan.stream_tokens} tokens at 2 tokens/s each)"
        )
        per = ", ".join(
            f"{streams['rss_idle_mb'][pid]:.0f} -> {streams['rss_peak_mb'][pid]:.0f} MiB"
            for pid in streams["rss_peak_mb"]
        )
        p(
            f"   completed {streams['ok']}/{streams['count']}, errors {streams['errors']} {streams['error_kinds'] or ''}, "
            f"most in flight at once {streams['most_in_flight']}, {streams['seconds']:.1f} s"
        )
        p(f"   RSS per gateway worker, idle -> peak: {per}")
        lite = r.get("streams_litellm")
        if lite:
            p(
                f"   LiteLLM: completed {lite['ok']}/{lite['count']}, errors {lite['errors']} "
                f"{lite['error_kinds'] or ''}, most in flight {lite['most_in_flight']}, {lite['seconds']:.1f} s; "
                "RSS per worker at peak: "
                + ", ".join(f"{v:.0f} MiB" for v in lite["rss_peak_mb"].values())
            )
    enf = r.get("enforcement")
    if enf:
        on, off = enf["on"], enf["off"]
        p("")
        p(
            "6. Enforcement on vs off (GATEWAY_ENFORCEMENT=false), canned non-stream, saturated, alternating runs"
        )
        p(
            "   rounds (on / off req/s, other load): "
            + "; ".join(
                f"{a:.0f} / {c:.0f} ({o:.2f})"
                for a, c, o in zip(enf["on_all"], enf["off_all"], enf["other_all"], strict=True)
            )
        )
        p(
            f"   median on {_f(on['rps'], 0)} req/s, off {_f(off['rps'], 0)} req/s; median of the per-round ratios: "
            f"on = {enf['ratio']:.1f}% of off; errors {enf.get('errors', 0)}"
        )
        p(f"   CPU, median run on: {_cpu(enf['on_cpu'])}")
        p(f"   CPU, median run off: {_cpu(enf['off_cpu'])}")
    if r.get("compare"):
        p("")
        p(f"7. Server model comparison (production: {plan.server}, figures above)")
        for cmp_ in r["compare"]:
            p(
                f"   {cmp_['server']}: saturated canned non-stream {_f(cmp_['saturated']['rps'], 0)} req/s "
                f"(CPU: {_cpu(cmp_['cpu'])}); one client gateway p50 {_f(cmp_['single']['p50_ms'], 2)} ms; "
                f"500 concurrent on the 2 s upstream {_f(cmp_['slow']['rps'])} req/s, errors {cmp_['slow']['errors']}"
            )
    rollups = r.get("rollups")
    if rollups:
        p("")
        p(
            f"8. Rollups: {rollups['events']:,} usage events in {rollups['seconds']:.1f} s = "
            f"{rollups['events_per_s']:,.0f} events/s (1 worker; rollups == events: {rollups['ok']})"
        )
    if r.get("litellm") or r.get("saturated"):
        lines.extend(compare.report_lines(r))
    for note in b.notes:
        p(f"   note: {note}")

    targets = evaluate(b)
    p("")
    p("Targets")
    for name, measured, goal, met in targets:
        mark = "n/a" if met is None else ("MET" if met else "NOT MET")
        p(f"   {mark:<8}{name:<58}{measured:<26}(target {goal})")
    if r.get("litellm"):
        p("")
        p("README table (this run):")
        lines.extend(compare.markdown(compare.side_by_side(r), r.get("machine", {})))
    print("\n".join(lines), flush=True)
    return targets


def _slow_share(slow: dict) -> float:
    """Gateway throughput as a share of direct, both as connections / mean latency (Little's
    law): a count in a fixed window depends on where the 2 s waves fall in it."""
    direct, gateway = slow["direct"]["avg_ms"], slow["gateway"]["avg_ms"]
    if direct != direct or gateway != gateway or not gateway:  # NaN: no latency figures
        return slow["gateway"]["rps"] / slow["direct"]["rps"] * 100
    return direct / gateway * 100


def evaluate(b: Bench) -> list[tuple[str, str, str, bool | None]]:
    r = b.results
    out = []
    sat = r.get("saturated", {}).get("canned non-stream")
    if sat:
        rps = sat["gateway"]["rps"]
        out.append(
            (
                "saturated throughput (canned upstream, non-stream)",
                f"{rps:.0f} req/s",
                ">= 600 req/s",
                rps >= 600,
            )
        )
    single = r.get("single", {}).get("canned")
    if single:
        added = single["gateway"]["p50_ms"] - single["direct"]["p50_ms"]
        out.append(("added latency p50, one client", f"{added:.2f} ms", "<= 3 ms", added <= 3))
    rate = r.get("rate")
    if rate:
        added = rate["gateway"]["p99_ms"] - rate["direct"]["p99_ms"]
        out.append(
            (
                f"added latency p99 at {rate['rate']:.0f} req/s",
                f"{added:.2f} ms",
                "<= 10 ms",
                added <= 10,
            )
        )
    slow = r.get("slow")
    if slow and slow["direct"]["rps"]:
        share = _slow_share(slow)
        out.append(
            (
                "500 concurrent on a 2 s upstream, share of direct",
                f"{share:.1f}%",
                ">= 90%",
                share >= 90 and slow["gateway"]["errors"] == 0,
            )
        )
    streams = r.get("streams")
    if streams:
        met = streams["errors"] == 0 and streams["most_in_flight"] >= streams["count"]
        out.append(
            (
                f"{streams['count']} concurrent streams held, no errors",
                f"{streams['errors']} errors, {streams['most_in_flight']} at once",
                "0 errors",
                met,
            )
        )
        peak = max(streams["rss_peak_mb"].values()) if streams["rss_peak_mb"] else float("nan")
        out.append(
            ("peak memory per gateway process, 1,000 streams", f"{peak:.0f} MiB", "reported", None)
        )
    enf = r.get("enforcement")
    if enf and enf["off"]["rps"]:
        share = enf["ratio"]
        out.append(
            (
                "throughput enforcement on vs off",
                f"{share:.1f}%" + (f", {enf['errors']} errors" if enf.get("errors") else ""),
                ">= 80%, no errors",
                share >= 80 and not enf.get("errors"),
            )
        )
    return out + compare.peer_targets(r)
