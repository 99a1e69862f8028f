"""The fake Unkey in process (`tests/support/unkey_fake.py`): the Portal on KEY_PROVIDER=unkey,
its SDK answered by a FakeUnkey. (The fake over HTTP for live gateways, `unkey_server`, and
the live-process fixtures are in tests/conftest.py.)"""

from __future__ import annotations

import pytest

from tests.support.unkey_fake import in_process_unkey


@pytest.fixture
def unkey_fake(settings):
    yield from in_process_unkey(settings)
