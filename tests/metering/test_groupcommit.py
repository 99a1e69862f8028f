"""Group commit of the gateway's request writes (metering/groupcommit.py): a lone record
is written at once, records that end while a write runs go together in the next one, and
every caller learns its own batch's outcome. Threads stand in for the gevent worker's
greenlets (the committer uses `threading`'s primitives, which gevent patches)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from metering.groupcommit import Committer, GroupTimeout, WriteAlone


class Writer:
    """write_many for a Committer: records each batch; the first one waits for `release`."""

    def __init__(self, error: BaseException | None = None):
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.error = error

    def __call__(self, records, timeout):
        self.batches.append(list(records))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(5)
        if self.error is not None:
            raise self.error


def unavailable(error: BaseException) -> bool:
    return isinstance(error, OperationalError)


def write_in_threads(committer: Committer, records, timeout=5.0):
    outcomes: dict[str, object] = {}

    def run(record):
        try:
            committer.write(record, timeout)
            outcomes[record] = "ok"
        except Exception as error:
            outcomes[record] = error

    threads = [threading.Thread(target=run, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    return outcomes, threads


def wait_until(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_lone_record_is_written_at_once():
    writer = Writer()
    writer.release.set()
    committer = Committer(writer, unavailable)

    committer.write("r1", 1.0)

    assert writer.batches == [["r1"]]


def test_records_ending_during_a_write_go_together_in_the_next():
    writer = Writer()
    committer = Committer(writer, unavailable)
    first, first_threads = write_in_threads(committer, ["r0"])
    assert writer.started.wait(5)

    outcomes, threads = write_in_threads(committer, [f"r{i}" for i in range(1, 6)])
    wait_until(lambda: committer._open is not None and len(committer._open.records) == 5)
    assert writer.batches == [["r0"]]  # nobody returned before their batch was written
    assert outcomes == {}
    writer.release.set()
    for thread in first_threads + threads:
        thread.join(5)

    assert writer.batches[0] == ["r0"]
    assert sorted(writer.batches[1]) == [f"r{i}" for i in range(1, 6)]
    assert len(writer.batches) == 2
    assert set(outcomes.values()) == {"ok"} and first == {"r0": "ok"}


@pytest.mark.parametrize(
    ("error", "raised"),
    [(OperationalError("down"), OperationalError), (ValueError("refused row"), WriteAlone)],
)
def test_every_caller_learns_its_batchs_failure(error, raised):
    """Unavailable: each caller gets the error (and spools its record); any other error:
    each caller is told to write its record alone, so only a faulty one fails."""
    writer = Writer(error=error)
    committer = Committer(writer, unavailable)
    first, first_threads = write_in_threads(committer, ["r0"])
    assert writer.started.wait(5)
    outcomes, threads = write_in_threads(committer, ["r1", "r2"])
    wait_until(lambda: committer._open is not None and len(committer._open.records) == 2)
    writer.release.set()
    for thread in first_threads + threads:
        thread.join(5)

    for outcome in [*first.values(), *outcomes.values()]:
        assert isinstance(outcome, raised)


def test_a_write_that_outlasts_the_timeout_times_the_next_batch_out():
    writer = Writer()
    committer = Committer(writer, unavailable)
    first, first_threads = write_in_threads(committer, ["r0"])
    assert writer.started.wait(5)

    with pytest.raises(GroupTimeout) as caught:
        committer.write("r1", 0.05)

    assert isinstance(caught.value, OperationalError)  # so request_record spools the record
    writer.release.set()
    first_threads[0].join(5)
    assert first == {"r0": "ok"} and writer.batches == [["r0"]]
    committer.write("r2", 1.0)  # the committer goes on
    assert writer.batches == [["r0"], ["r2"]]
