"""The test side of tests/infra/gevent_redis_probe.py: a gevent-patched child process
answering calls, one JSON line each way.

    probe = GeventProbe(env)
    probe.open_client(name="c", transport="mux", url=url)   # any function in its CALLS
    probe.run_script(name="c", source="return 1")           # -> 1
    probe.close()

A call that raises in the child raises ProbeError here, with the exception's class
names and message; a child that dies or hangs fails the call with its stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ProbeError(Exception):
    """An exception raised in the probe: `type` its class name, `classes` its MRO's names."""

    def __init__(self, type: str, classes: list[str], message: str):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.classes = classes
        self.message = message


class GeventProbe:
    def __init__(self, env: dict[str, str] | None = None):
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gevent.monkey", "--module", "tests.infra.gevent_redis_probe"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def __getattr__(self, call: str):
        if call.startswith("_"):
            raise AttributeError(call)
        return functools.partial(self.call, call)

    def call(self, call: str, *, timeout: float = 60.0, **kwargs):
        line = ""
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(json.dumps({"call": call, "kwargs": kwargs}) + "\n")
            self.proc.stdin.flush()
            # One line answers one request: nothing is left in the pipe's buffer after it.
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if ready else ""
        if not line:
            stderr = self.stderr()
            self.close()
            raise AssertionError(
                f"the gevent probe gave no answer to {call} (exit {self.proc.returncode}):\n"
                + stderr[-6000:]
            )
        answer = json.loads(line)
        if "error" in answer:
            raise ProbeError(**answer["error"])
        return answer["value"]

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(BrokenPipeError):
                stream.close()
        self._stderr.close()
