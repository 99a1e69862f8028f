"""Metering fixtures: keys of alice and bob. (Clocks are pinned with `MONDAY` from
tests/factories/metering.py; real concurrency is in tests/support/concurrency.py.)"""

from __future__ import annotations

import pytest

from tests.factories.apikeys import issue_key


@pytest.fixture
def alice_key(alice, alice_org):
    return issue_key(alice_org, by=alice, name="alice's key").key


@pytest.fixture
def alice_key2(alice, alice_org):
    return issue_key(alice_org, by=alice, name="alice's second key").key


@pytest.fixture
def bob_key(bob, bob_org):
    return issue_key(bob_org, by=bob, name="bob's key").key
