"""The fake Unkey (in process), and the live-process fixtures and hooks of tests/e2e for the
Unkey tests that drive gateway processes (shared rather than copied, as tests/ops does)."""

from tests.e2e.conftest import (  # noqa: F401
    gateway,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    simulator_pool,
    simulators,
    unkey_server,
)
from tests.unkey_fake import unkey_fake  # noqa: F401
