"""Group commit for the gateway's request writes (issue 17).

Every gateway request ends with one durable write (`metering.services.request_record`).
Under the gevent server a worker ends hundreds of requests a second, and each write on
its own pays a pooled-connection checkout, a statement and the waits for its answer:
about a tenth of a worker's CPU at saturation. Here the records of requests that end
while another write is in flight are sent together, as one pipeline
(`request_records_write`), when that write is done:

- no timer: a record that finds no write in flight is written at once (a lone request
  waits no longer than before);
- durability is unchanged: each caller returns only once the batch holding its record is
  committed, and raises what that write raised, so `request_record` spools it as before;
- a batch that fails for any other reason than Postgres being unavailable (a record
  Postgres refuses: a key deleted meanwhile, a bug) is written again one record at a
  time by its callers, so only the faulty record's caller sees the error;
- one batch is written at a time per process; the next collects meanwhile. A caller
  waits at most its timeout for the write before its batch, then for its own.

`Committer` is the mechanism (threads or greenlets, with `threading`'s primitives, which
gevent patches); `for_process` gives the process's one when group commit applies, and
metering/services.py adds the connection's conditions (a pool, no transaction held).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import cache
from time import monotonic
from typing import Generic, TypeVar

from django.conf import settings
from django.db import OperationalError

T = TypeVar("T")


class GroupTimeout(OperationalError):
    """The write before this batch did not finish within the caller's timeout: Postgres
    is too slow to take writes now (an OperationalError, so the record is spooled)."""


class WriteAlone(Exception):
    """The batch failed for a reason other than unavailability: write the record alone."""


class _Batch(Generic[T]):
    __slots__ = ("done", "error", "records")

    def __init__(self) -> None:
        self.records: list[T] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


class Committer(Generic[T]):
    """`write(record, timeout)`: committed in a group with the records that arrived while
    the previous write ran. `write_many(records, timeout)` writes a batch;
    `unavailable(error)` says whether an error means Postgres cannot take writes now."""

    def __init__(
        self,
        write_many: Callable[[list[T], float | None], None],
        unavailable: Callable[[BaseException], bool],
    ):
        self._write_many = write_many
        self._unavailable = unavailable
        self._open: _Batch[T] | None = None  # collecting records, not yet being written
        self._writing = threading.Lock()  # held while a batch is written
        self._guard = threading.Lock()  # guards _open

    def write(self, record: T, timeout: float | None) -> None:
        deadline = None if timeout is None else monotonic() + timeout
        with self._guard:
            batch = self._open
            leader = batch is None
            if leader:
                batch = self._open = _Batch()
            batch.records.append(record)
        if leader:
            self._lead(batch, deadline)
        elif not batch.done.wait(None if timeout is None else 2 * timeout + 1):
            raise GroupTimeout("the group write did not finish in time")
        if batch.error is not None:
            raise batch.error

    def _lead(self, batch: _Batch[T], deadline: float | None) -> None:
        """Wait for the write in flight, close the batch, write it, wake its callers."""
        try:
            left = -1 if deadline is None else max(deadline - monotonic(), 0.0)
            if not self._writing.acquire(timeout=left):
                with self._guard:
                    if self._open is batch:
                        self._open = None
                raise GroupTimeout("the write before this batch did not finish in time")
            try:
                with self._guard:
                    if self._open is batch:
                        self._open = None  # later records start the next batch
                remaining = None if deadline is None else max(deadline - monotonic(), 0.001)
                self._write_many(batch.records, remaining)
            finally:
                self._writing.release()
        except BaseException as error:
            batch.error = (
                error
                if self._unavailable(error) or isinstance(error, GroupTimeout)
                else WriteAlone(str(error))
            )
        finally:
            batch.done.set()


_process: tuple[int, Committer] | None = None


def for_process(write_many, unavailable) -> Committer | None:
    """This process's committer (made on first use, again after a fork) when group commit
    applies: USAGE_GROUP_COMMIT on, under gevent (a threaded or test process writes alone)."""
    global _process
    if not settings.USAGE_GROUP_COMMIT or not _gevent_patched():
        return None
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), Committer(write_many, unavailable))
    return _process[1]


@cache
def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")
