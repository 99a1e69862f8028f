"""The gateway suite runs once per key provider: local keys, and keys that a fake Unkey
issues and verifies through the real SDK (`tests/support/unkey_fake.py`). Its tests call the
gateway in process, most in front of a simulated router on a thread (`router_url`, in
tests/conftest.py)."""

from __future__ import annotations

import pytest

from pools.simulator import start_in_thread
from tests.support.unkey_fake import key_provider_fixture


@pytest.fixture(params=["local", "unkey"], autouse=True)
def key_provider(request, settings):
    """None for local keys; the FakeUnkey for Unkey keys."""
    yield from key_provider_fixture(request, settings)


@pytest.fixture
def simulator():
    """`simulator(**knobs) -> base_url` of a quiet router simulator on a thread; every one
    started is stopped after the test (`router_url` is one with default knobs)."""
    stops = []

    def start(**knobs) -> str:
        url, stop = start_in_thread(quiet=True, **knobs)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run a control change's after-commit effects (fast-state flag, catalog bump) at once."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
