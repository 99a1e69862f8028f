"""Headless Chromium (Debian's package) driven over the DevTools protocol: open a page with a
cookie and extra request headers, evaluate JavaScript in it, take a screenshot."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-allow-origins=*",
    "--window-size=1400,1000",
]


def available() -> bool:
    return shutil.which("chromium") is not None


class Page:
    """One tab of a browser this object starts and stops."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        self._stderr = open(profile / "chromium.log", "w+b")  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [
                shutil.which("chromium"),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, "HOME": str(profile)},
        )
        self._ids = itertools.count(1)
        self.ws = websocket.create_connection(
            self._browser_endpoint(), timeout=timeout, suppress_origin=True
        )
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self._call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")

    def _browser_endpoint(self) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._stderr.seek(0)
            match = re.search(rb"DevTools listening on (ws://\S+)", self._stderr.read())
            if match:
                return match.group(1).decode()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self._stderr.seek(0)
        raise RuntimeError(
            f"chromium did not start:\n{self._stderr.read().decode(errors='replace')[-3000:]}"
        )

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:  # events arrive between answers: skip them
            reply = json.loads(self.ws.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def send(self, method: str, **params) -> dict:
        return self._call(method, self.session, **params)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate and wait until the page and its stylesheets have loaded."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(RuntimeError):  # the old document may be going away
                if (
                    self.evaluate("document.readyState") == "complete"
                    and self.evaluate("location.href") == url
                ):
                    return
        raise TimeoutError(f"{url} did not finish loading")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._stderr.close()
