"""The peer the Portal is measured against in the same run: the LiteLLM proxy.

`bench/run.py --peers` installs `litellm[proxy]` once into its own virtual environment
(bench/.peers/litellm, git-ignored, kept between runs: a second run does not reinstall)
and runs it as a proxy with no database (master key only: fewer features than the
Portal's key, limit, allowance and durable-log checks), 2 uvicorn workers as the
Portal's gateway gets, `LITELLM_LOCAL_MODEL_COST_MAP=True` (no fetch at start), pointed
at the same bench upstreams as the Portal and the direct calls: each model is
`openai/<name>` at `<upstream>/v1`, which bench/upstream.py answers in the OpenAI chat
shape. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING

from bench import stack, wrk

if TYPE_CHECKING:
    from bench.run import Bench

PEERS_DIR = stack.ROOT / "bench" / ".peers"
VENV = PEERS_DIR / "litellm"
MARKER = VENV / ".bench-installed"  # the installed version, written after a good install
REQUIREMENT = os.environ.get("BENCH_LITELLM_REQUIREMENT", "litellm[proxy]")
MASTER_KEY = "sk-bench-litellm-master-key"
WORKERS = 2


def litellm_config(models: dict[str, str]) -> str:
    """The proxy's config for `models` (name -> upstream base URL): each an OpenAI-compatible
    model at the upstream, no retries to hide a failure. JSON, which YAML reads as is."""
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": f"openai/{name}",
                        "api_base": f"{url.rstrip('/')}/v1",
                        "api_key": "bench-upstream-takes-any-key",
                    },
                }
                for name, url in sorted(models.items())
            ],
            "litellm_settings": {"num_retries": 0, "drop_params": True},
        },
        indent=2,
    )


def litellm_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: none of the Portal's settings (DATABASE_URL would make the
    proxy use a database), the master key, the local cost map, errors-only logging."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in base}
    env.update(
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        PYTHONUNBUFFERED="1",
    )
    return env


def installed_version() -> str | None:
    """The version a previous run installed, if its environment is still whole."""
    if MARKER.exists() and (VENV / "bin" / "litellm").exists():
        return MARKER.read_text().strip() or None
    return None


def ensure_litellm(say=print) -> str:
    """Install the proxy into bench/.peers/litellm unless a previous run did; its version."""
    version = installed_version()
    if version:
        return version
    say(f"installing {REQUIREMENT} into {VENV} (once; later runs reuse it)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    done = subprocess.run(
        [
            str(VENV / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {REQUIREMENT} failed:\n{done.stderr[-3000:]}")
    version = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    MARKER.write_text(version + "\n")
    return version


def start_litellm(st: stack.Stack, models: dict[str, str], timeout: float = 180) -> stack.Proc:
    """The proxy on a free port, once `/health/liveliness` answers (its import is slow)."""
    config = st.logdir / "litellm-config.yaml"
    config.write_text(litellm_config(models))
    port = stack.free_port()
    command = [
        str(VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(WORKERS),
    ]
    proc = st._spawn("litellm", command, litellm_env())
    proc.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        try:
            with urllib.request.urlopen(proc.url + "/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(
        f"litellm did not answer /health/liveliness:\n{proc.log.read_text(errors='replace')[-3000:]}"
    )


def start_peer(b: Bench, say=print) -> None:
    """The LiteLLM proxy on the canned, 2 s and held-stream upstreams, warmed like the gateway."""
    say("LiteLLM proxy: the virtual environment in bench/.peers/litellm (installed once)")
    version = ensure_litellm(say)
    b.results["litellm"] = {"version": version, "workers": WORKERS}
    b.results["machine"]["litellm"] = version
    say(f"starting the LiteLLM proxy {version} ({WORKERS} workers, no database)")
    b.peer = start_litellm(
        b.st,
        {
            "bench-canned": b.upstreams["canned"].url,
            "bench-slow": b.upstreams["slow"].url,
            "bench-stream": b.upstreams["stream"].url,
        },
    )
    for stream, seconds in ((False, 2), (True, 1)):
        wrk.saturate(
            b.wrk_bin,
            b.peer_target("bench-canned", stream=stream),
            connections=16,
            seconds=seconds,
        )
