"""Real concurrency for tests: jobs released together, each on its own thread (and so its
own database connection), and the mark for tests that need Postgres's locks to mean it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs Postgres: row locks, SKIP LOCKED and advisory locks",
)


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


def at_once(calls: list) -> list:
    """Run the calls concurrently, released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
