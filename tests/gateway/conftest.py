"""The gateway suite runs once per key provider: local keys, and keys that a fake Unkey
issues and verifies through the real SDK (`tests/unkey_fake.py`)."""

from __future__ import annotations

import pytest

from tests.unkey_fake import key_provider_fixture


@pytest.fixture(params=["local", "unkey"], autouse=True)
def key_provider(request, settings):
    """None for local keys; the FakeUnkey for Unkey keys."""
    yield from key_provider_fixture(request, settings)
