"""Saturating load with wrk (installed with apt-get when missing), or the asyncio
client in bench/load.py when wrk cannot be had."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import load

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class Run:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts
    tool: str
    avg_ms: float = float("nan")


def ensure_wrk() -> str | None:
    """The wrk binary, installing Debian's package once if it is missing; None if it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True, timeout=180
        )
    except (OSError, subprocess.SubprocessError):
        try:
            subprocess.run(
                ["apt-get", "update", "-q"], check=True, capture_output=True, timeout=180
            )
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "wrk"],
                check=True,
                capture_output=True,
                timeout=180,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which("wrk")


def _lua(target: load.Target) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ['wrk.method = "POST"', f"wrk.body = {quote(target.body.decode())}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in target.headers.items():
        lines.append(f"wrk.headers[{quote(name)}] = {quote(value)}")
    return "\n".join(lines) + "\n"


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parse(output: str) -> Run:
    requests = int(re.search(r"(\d+) requests in ([\d.]+\w+)", output).group(1))
    seconds = _duration(re.search(r"\d+ requests in ([\d.]+\w+)", output).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    avg = re.search(r"^\s+Latency\s+(\S+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(n) for n in sock.groups())
    return Run(
        requests=requests,
        seconds=seconds,
        rps=rps,
        p50_ms=_duration(p50.group(1)) * 1000 if p50 else float("nan"),
        p99_ms=_duration(p99.group(1)) * 1000 if p99 else float("nan"),
        avg_ms=_duration(avg.group(1)) * 1000 if avg else float("nan"),
        errors=errors,
        tool="wrk",
    )


def saturate(
    wrk: str | None,
    target: load.Target,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout_s: float = 10,
) -> Run:
    """`connections` keep-alive clients sending as fast as answers come back."""
    if wrk is None:
        results, elapsed = asyncio.run(load.closed_loop(target, connections, seconds))
        good = [r.total for r in results if r.ok]
        return Run(
            requests=len(results),
            seconds=elapsed,
            rps=len(results) / elapsed,
            p50_ms=load.percentile(good, 50) * 1000,
            p99_ms=load.percentile(good, 99) * 1000,
            avg_ms=sum(good) / len(good) * 1000 if good else float("nan"),
            errors=sum(1 for r in results if not r.ok),
            tool="asyncio",
        )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(target))
    try:
        url = f"http://{target.host}:{target.port}{target.path}"
        command = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + timeout_s + 30
        )
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
        return _parse(done.stdout)
    finally:
        Path(script.name).unlink(missing_ok=True)
