"""Direct, LiteLLM and the Portal side by side, from one run's results (bench/run.py
--peers): the ratios the targets are set in, whether the gateway (not the load
generator) was the bottleneck, how noisy the machine was, and a README-ready table.

Pure functions of the results dict (all but machine_info, which reads /proc/cpuinfo
and git), so tests/bench checks the maths without a network.
Absolute figures move with the machine (a shared 2-core VM's speed drifts by 2x over
hours); ratios measured in one run are what carries.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NOISY_CORES = 0.25  # other processes' load above which a measurement counts as noisy


@dataclass
class Row:
    what: str
    direct: str
    litellm: str
    portal: str
    vs_litellm: str
    vs_direct: str


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def _x(value: float) -> str:
    return "-" if value != value else f"{value:,.1f}x"


def _pct(value: float) -> str:
    return "-" if value != value else f"{value * 100:.1f} %"


def _errors(run: dict | None) -> str:
    """A figure counted with failed requests in it is marked: refusals answer fast."""
    errors = (run or {}).get("errors") or 0
    return f" ({errors:,} errors)" if errors else ""


def times(a: float, b: float) -> float:
    """a / b, NaN when either is missing or b is zero."""
    a, b = _num(a), _num(b)
    return a / b if b and a == a and b == b else math.nan


def sustained(run: dict | None, connections: int) -> float:
    """Requests/s a closed loop of `connections` sustains, by Little's law (connections /
    mean latency): a count in a short window depends on where the 2 s waves fall in it."""
    if not run:
        return math.nan
    avg = _num(run.get("avg_ms"))
    if avg == avg and avg > 0:
        return connections / avg * 1000
    return _num(run.get("rps"))


def cpu_ms(cpu: dict | None, proxy: str, run: dict | None) -> float:
    """CPU milliseconds per request of the proxy and its stores (the Portal's Postgres and
    Redis; LiteLLM here uses neither) in a saturated run."""
    if not cpu or not run or proxy not in cpu:
        return math.nan
    cores = sum(_num(cpu.get(name, 0.0)) for name in (proxy, "postgres", "redis"))
    return times(cores * 1000, run.get("rps"))


def added(single: dict, kind: str, key: str = "p50_ms") -> float:
    """What `kind` (gateway, litellm, their _stream variants) adds to the direct call."""
    base = "direct_stream" if kind.endswith("_stream") else "direct"
    if kind not in single or base not in single:
        return math.nan
    return _num(single[kind][key]) - _num(single[base][key])


def side_by_side(r: dict) -> list[Row]:
    rows = []
    for name in ("canned non-stream", "canned stream"):
        row = r.get("saturated", {}).get(name)
        if not row:
            continue
        d, p = _num(row["direct"]["rps"]), _num(row["gateway"]["rps"])
        lite = _num((row.get("litellm") or {}).get("rps"))
        rows.append(
            Row(
                f"saturated req/s, {name}",
                _fmt(d) + _errors(row["direct"]),
                _fmt(lite) + _errors(row.get("litellm")),
                _fmt(p) + _errors(row["gateway"]),
                _x(times(p, lite)),
                _pct(times(p, d)),
            )
        )
    sat = r.get("saturated", {}).get("canned non-stream")
    if sat:
        # CPU per request moves less with other load than requests/s does.
        p = cpu_ms(sat.get("cpu"), "gateway", sat["gateway"])
        lite = cpu_ms(sat.get("litellm_cpu"), "litellm", sat.get("litellm"))
        share = times(p, lite)
        rows.append(
            Row(
                "CPU ms per request (proxy + Postgres + Redis), saturated canned",
                "",
                _fmt(lite, 2),
                _fmt(p, 2),
                f"1/{_fmt(1 / share, 1)}" if share and share == share and share > 0 else "-",
                "",
            )
        )
    single = r.get("single", {}).get("canned")
    if single:
        for label, kind, key in (
            ("one client, added p50 ms (non-stream)", "", "p50_ms"),
            ("one client, added TTFB p50 ms (stream)", "_stream", "ttfb_p50_ms"),
        ):
            base = single.get("direct" + kind, {}).get(key)
            p, lite = added(single, "gateway" + kind, key), added(single, "litellm" + kind, key)
            share = times(p, lite)
            rows.append(
                Row(
                    label,
                    f"{_fmt(_num(base), 2)} (itself)",
                    _fmt(lite, 2),
                    _fmt(p, 2),
                    f"1/{_fmt(1 / share, 1)}" if share and share == share and share > 0 else "-",
                    "",
                )
            )
    slow = r.get("slow")
    if slow:
        n = slow["connections"]
        d, p = sustained(slow["direct"], n), sustained(slow["gateway"], n)
        lite = sustained(slow.get("litellm"), n)
        rows.append(
            Row(
                f"{n} concurrent on the 2 s upstream, sustained req/s",
                _fmt(d, 1) + _errors(slow["direct"]),
                _fmt(lite, 1) + _errors(slow.get("litellm")),
                _fmt(p, 1) + _errors(slow["gateway"]),
                _x(times(p, lite)),
                _pct(times(p, d)),
            )
        )
    streams = r.get("streams")
    if streams:
        lite = r.get("streams_litellm")
        rows.append(
            Row(
                f"{streams['count']:,} held streams: completed, errors",
                "",
                f"{lite['ok']:,}, {lite['errors']}" if lite else "-",
                f"{streams['ok']:,}, {streams['errors']}",
                "",
                "",
            )
        )
    enf = r.get("enforcement")
    if enf:
        rounds = [times(a, c) * 100 for a, c in zip(enf["on_all"], enf["off_all"], strict=True)]
        rows.append(
            Row(
                "enforcement on vs off (median of rounds)",
                "",
                "",
                f"{_fmt(enf['ratio'], 1)} % (rounds {', '.join(_fmt(x) for x in rounds)} %)",
                "",
                "",
            )
        )
    rollups = r.get("rollups")
    if rollups:
        rows.append(
            Row(
                f"rollups, events/s ({_fmt(rollups['events'])} events)",
                "",
                "",
                _fmt(rollups["events_per_s"]),
                "",
                "",
            )
        )
    return rows


def peer_targets(r: dict) -> list[tuple[str, str, str, bool | None]]:
    """The targets set against LiteLLM and the rollup rate (issue 17); the others (share of
    direct, enforcement, streams) are judged in bench/report.py's evaluate()."""
    out = []
    sat = r.get("saturated", {}).get("canned non-stream")
    if sat and sat.get("litellm"):
        x = times(sat["gateway"]["rps"], sat["litellm"]["rps"])
        clean = not (sat["gateway"].get("errors") or sat["litellm"].get("errors"))
        out.append(
            (
                "saturated throughput vs LiteLLM",
                _x(x) + ("" if clean else ", with errors"),
                ">= 10x, no errors",
                x >= 10 and clean,
            )
        )
    single = r.get("single", {}).get("canned")
    if single and "litellm" in single:
        p, lite = added(single, "gateway"), added(single, "litellm")
        share = times(p, lite)
        out.append(
            (
                "one client added p50 vs LiteLLM's",
                f"{_fmt(p, 2)} vs {_fmt(lite, 2)} ms = {_fmt(share * 100, 1)} %",
                "<= 1/10 (10 %)",
                share == share and share <= 0.1,
            )
        )
    rollups = r.get("rollups")
    if rollups:
        rate = _num(rollups["events_per_s"])
        out.append(("rollups", f"{_fmt(rate)} events/s", ">= 2,000 events/s", rate >= 2000))
    return out


def bottleneck(cpu: dict, proxy: str = "gateway") -> tuple[float, float, bool]:
    """(proxy cores, load generator cores, the proxy was the bottleneck): wrk runs one
    thread, so it limits the run only near a core, and it should use far less than the
    proxy it drives."""
    p, load = _num(cpu.get(proxy)), _num(cpu.get("load generator"))
    if p != p or load != load:
        return p, load, False
    return p, load, load < 0.8 and load < p / 2


def other_loads(node, path: str = "") -> list[tuple[str, float]]:
    """Every `other` reading (cores used outside the benchmark) in the results, by where."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "other" and isinstance(value, int | float):
                found.append((path, float(value)))
            elif key == "other_all" and isinstance(value, list):
                found += [(f"{where}[{i}]", float(v)) for i, v in enumerate(value)]
            else:
                found += other_loads(value, where)
    return found


def noise(r: dict) -> dict:
    loads = other_loads(r)
    noisy = [(where, v) for where, v in loads if v >= NOISY_CORES]
    values = sorted(v for _, v in loads)
    return {
        "measurements": len(loads),
        "noisy": len(noisy),
        "max": values[-1] if values else math.nan,
        "median": values[len(values) // 2] if values else math.nan,
        "worst": sorted(noisy, key=lambda item: -item[1])[:3],
    }


def noise_line(n: dict) -> str:
    if not n["measurements"]:
        return "machine load outside the benchmark: not measured"
    if not n["noisy"]:
        return (
            f"the machine was quiet: other processes used under {NOISY_CORES} cores in all "
            f"{n['measurements']} measurements (max {n['max']:.2f})"
        )
    return (
        f"the machine was NOISY: other processes used >= {NOISY_CORES} cores in {n['noisy']} of "
        f"{n['measurements']} measurements (max {n['max']:.2f}, median {n['median']:.2f}; worst: "
        + ", ".join(f"{where} {v:.2f}" for where, v in n["worst"])
        + "); absolute figures are low, compare the ratios"
    )


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return "unknown"


def markdown(rows: list[Row], machine: dict) -> list[str]:
    """The side-by-side table as README markdown, headed by the machine it ran on."""
    lines = [
        f"{machine.get('date', '?')}, commit {machine.get('commit', '?')}, {machine.get('nproc', '?')} cores "
        f"({machine.get('cpu', '?')}), LiteLLM {machine.get('litellm', '?')}",
        "",
        "| what | direct | LiteLLM | Portal | Portal vs LiteLLM | Portal vs direct |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.what} | {row.direct} | {row.litellm} | {row.portal} | {row.vs_litellm} | {row.vs_direct} |"
        for row in rows
    ]
    return lines


def machine_info() -> dict:
    """What the run ran on: the figures are this machine's, at this commit."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    commit = (
        os.environ.get("BENCH_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(cpuinfo),
        "commit": commit or "?",
    }


def bottleneck_lines(saturated: dict) -> list[str]:
    """For each saturated run: the proxy's cores against the load generator's."""
    lines = []
    for name, row in saturated.items():
        for label, key, cpu in (
            ("Portal", "gateway", row.get("cpu")),
            ("LiteLLM", "litellm", row.get("litellm_cpu")),
        ):
            if not cpu:
                continue
            proxy, load, bound = bottleneck(cpu, key)
            verdict = (
                "the proxy is the bottleneck" if bound else "CHECK: the load generator may limit"
            )
            lines.append(
                f"   {name}, {label}: proxy {_fmt(proxy, 2)} cores, load generator {_fmt(load, 2)}: {verdict}"
            )
    return lines


def report_lines(r: dict) -> list[str]:
    """Section 9 of the printed report: the side-by-side table and the machine's noise."""
    lines = ["", "9. Side by side, same upstreams, same run: direct, LiteLLM, the Portal"]
    lite = r.get("litellm")
    if lite:
        lines.append(
            f"   LiteLLM proxy {lite['version']}, {lite['workers']} workers, master key only, no "
            "database (fewer checks than the Portal: no per-key limits, allowance or durable log)"
        )
    rows = side_by_side(r)
    widths = [max(len(getattr(row, f)) for row in [*rows, HEAD]) for f in FIELDS]
    for row in [HEAD, *rows]:
        lines.append(
            "   " + "  ".join(getattr(row, f).ljust(w) for f, w in zip(FIELDS, widths, strict=True))
        )
    lines.append(f"   {noise_line(noise(r))}")
    return lines


FIELDS = ("what", "direct", "litellm", "portal", "vs_litellm", "vs_direct")
HEAD = Row("", "direct", "LiteLLM", "Portal", "Portal/LiteLLM", "Portal/direct")
