"""Every accounts test starts with a fresh JWKS cache on a clock it moves by hand; `dev`
switches to the dev auth provider. The identity-provider fixtures themselves (keys,
`jwks_server`, `clerk`, `supabase`, `idp`) are in tests/conftest.py, their helpers in
tests/support/identity.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _jwks_on_a_fake_clock(jwks_clock):
    """`jwks_clock` (tests/conftest.py) for every test here, asked for by name or not."""
    return jwks_clock


@pytest.fixture
def dev(settings):
    """Dashboard tokens from the dev provider (test_tokens.py's own also pins the secret)."""
    settings.AUTH_PROVIDER = "dev"
