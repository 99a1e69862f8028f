"""Every command and snippet of the README runs: the development ones against a live
`bin/dev` (here), the production ones in test_production.py, the compose one against
docker-compose.yml. A block nobody runs fails `test_every_block_is_run_by_a_test`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from tests.support import readme
from tests.support.processes import Process, free_port

ROOT = Path(settings.BASE_DIR)


def test_every_block_is_run_by_a_test():
    for block in readme.blocks():
        if block.lang in readme.RUNNABLE:
            assert block.tag in readme.TAGS[block.lang], f"{block.where()}: unknown tag"
    # What no test can run: bin/dev and bin/test themselves (the suite is run by one and
    # runs the other below) and the benchmark (minutes of load; bench/ has its own checks).
    manual = [b.text.split()[0] for b in readme.tagged("sh", "manual")]
    assert manual == ["bin/dev", "bin/test", ".venv/bin/python"], manual
    assert len(readme.tagged("sh", "prod")) == 3 and len(readme.tagged("sh", "prod-service")) == 3
    assert len(readme.tagged("dotenv", "prod")) == 1 and len(readme.tagged("sh", "compose")) == 1


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """`bin/dev PORT` as the README says to start it, with the key and token it prints."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("bin-dev")
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    process = Process(
        "bin/dev",
        ["bin/dev", str(port)],
        env,
        log_dir / "bin-dev.log",
        ready=r"== Cortensor Portal \(embedded defaults\)",
    )
    database = ROOT / "var" / f"portal-{port}.sqlite3"
    try:
        process.wait_for_line(timeout=300)
        printed = process.log()
        api_key = re.search(r"export CORTENSOR_API_KEY=(ctr_live_\w+)", printed).group(1)
        token = re.search(r"export TOKEN=(\S+)", printed).group(1)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the banner comes just before runserver starts
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, process.log()[-3000:]
            time.sleep(0.2)
        yield {
            "port": port,
            "env": {
                **env,
                "CORTENSOR_API_KEY": api_key,
                "TOKEN": token,
                # bin/dev's own database for this port, as the commands run beside it must use
                "DATABASE_URL": f"sqlite:///{database}",
                "PORTAL_ENV_FILE": "/nonexistent",
            },
            "process": process,
        }
    finally:
        process.stop()
        for leftover in [database, *ROOT.glob(f"var/simulator-{port}-*.log")]:
            leftover.unlink(missing_ok=True)


def _on_port(text: str, port: int) -> str:
    return text.replace("localhost:8000", f"localhost:{port}").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )


# What each development block must print, beyond running cleanly (in README order).
EXPECTED = [
    r'"object":\s*"chat\.completion"',  # curl chat
    r"\S",  # openai SDK: a reply and a streamed one
    r"\S",  # anthropic SDK
    r"name='get_weather'(.|\n)*name=",  # a tool call, a parsed object, a Responses answer
    r'"key":\s*"ctr_live_\w{43}"',  # dashboard: the new key, shown once
    r"^eyJ",  # mint_token
    r'"results":\s*\[\{',  # rollups, then usage by model
]


def test_the_development_blocks_run_against_bin_dev(dev_server):
    blocks = [b for b in readme.blocks() if (b.lang, b.tag) in {("sh", ""), ("python", "")}]
    assert len(blocks) == len(EXPECTED), [b.where() for b in blocks]
    for block, expected in zip(blocks, EXPECTED, strict=True):
        script = _on_port(block.text, dev_server["port"])
        if block.lang == "python":
            command = [sys.executable, "-c", script]
        else:
            command = ["bash", "-euo", "pipefail", "-c", script]
        result = subprocess.run(
            command, cwd=ROOT, env=dev_server["env"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (
            f"{block.where()}:\n{script}\n{result.stdout}\n{result.stderr}"
        )
        assert re.search(expected, result.stdout, re.MULTILINE), (
            f"{block.where()} printed:\n{result.stdout}"
        )


def test_a_second_bin_dev_on_the_same_port_is_refused(dev_server):
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    result = subprocess.run(
        ["bin/dev", str(dev_server["port"])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{dev_server['port']}" in result.stdout and "another bin/dev" in result.stdout


def test_the_compose_command_starts_what_docker_compose_yml_requires():
    (block,) = readme.tagged("sh", "compose")
    up = block.text.splitlines()[0]
    given = set(re.findall(r"\b([A-Z_]+)=", up.split("docker compose")[0]))
    compose = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", compose))
    assert required and required <= given, required - given
    assert "DEBUG=true" in up and "AUTH_PROVIDER=dev" in up  # dev auth needs DEBUG
    # Every service the commands name exists, and the router URL is the simulator's.
    services = yaml.safe_load(compose)["services"]
    for name in re.findall(r"docker compose exec (\S+)", block.text):
        assert name in services
    assert "router-sim:9101" in block.text and "9101" in " ".join(services["router-sim"]["command"])


# The modules that read settings from the environment (portal/settings.py imports the others).
SETTINGS_SOURCES = [
    ROOT / "portal" / name
    for name in ("settings.py", "environment.py", "gateway_settings.py", "edge_settings.py")
]


def test_compose_passes_every_setting_the_readme_documents_for_production():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = set(compose["x-portal-env"])
    (documented,) = readme.tagged("dotenv", "prod")
    missing = set(readme.dotenv(documented)) - environment
    assert not missing, f"docker-compose.yml does not pass {sorted(missing)} to the Portal"
    settings_source = "".join(path.read_text() for path in SETTINGS_SOURCES)
    unread = {name for name in environment if f'"{name}"' not in settings_source}
    assert not unread, (
        f"docker-compose.yml sets {sorted(unread)}, which portal/settings.py never reads"
    )


def test_no_snippet_uses_a_name_it_does_not_import():
    for block in readme.tagged("python", ""):
        compile(block.text, block.where(), "exec")
        for module in ("os", "json", "sys"):
            if re.search(rf"\b{module}\.", block.text):
                assert re.search(rf"^import {module}\b", block.text, re.MULTILINE), (
                    f"{block.where()}: import {module}"
                )


def test_env_example_lists_every_setting_the_processes_read():
    read = set()
    for path in (*SETTINGS_SOURCES, ROOT / "portal" / "gunicorn.py"):
        text = path.read_text()
        read |= set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', text))
        read |= set(re.findall(r'_secret\(\s*"([A-Z][A-Z0-9_]+)"', text))
        read |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', text))
    listed = set(
        re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert len(read) > 60
    assert not read - listed, f".env.example does not list {sorted(read - listed)}"
