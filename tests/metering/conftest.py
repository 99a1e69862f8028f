"""Metering fixtures: keys, pinned clocks, and real concurrency (threads with their own connections)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, connections

from tests.apikeys.factories import issue_key

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs Postgres: row locks, SKIP LOCKED and advisory locks",
)


@pytest.fixture
def alice_key(alice, alice_org):
    return issue_key(alice_org, by=alice, name="alice's key").key


@pytest.fixture
def alice_key2(alice, alice_org):
    return issue_key(alice_org, by=alice, name="alice's second key").key


@pytest.fixture
def bob_key(bob, bob_org):
    return issue_key(bob_org, by=bob, name="bob's key").key


def run_concurrently(*jobs: Callable[[], object], timeout: float = 60) -> list[object]:
    """Run each job in its own thread (its own database connection), released together; re-raise failures."""
    start = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], object]) -> None:
        try:
            start.wait()
            results[i] = job()
        except BaseException as exc:  # handed back to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a concurrent job hung"
    if errors:
        raise errors[0]
    return results
