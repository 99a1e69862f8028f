"""The usage spool (metering/spool.py): what request_record does when Postgres cannot take
the write, and the replay that writes the spool into Postgres exactly once."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.db import DataError, InternalError, OperationalError, ProgrammingError, connection
from django.utils import timezone

from metering import services, spool
from metering.ledger import ledger_post_closed_hours
from metering.models import LedgerEntry, RequestLog, UsageEvent
from metering.rollups import usage_rollup_pending
from metering.services import RequestRecord, request_record
from tests.factories.metering import (
    MONDAY,
    event_totals,
    ledger_usage_totals,
    record,
    rollup_totals,
)
from tests.support.ci import IN_CI
from tests.support.concurrency import run_concurrently
from tests.support.processes import ROOT, base_env, database_url


def _reset() -> None:
    spool.seal()
    services._held_until = 0.0
    spool._replay_held_until = 0.0


@pytest.fixture
def spool_dir(settings, tmp_path):
    settings.USAGE_SPOOL_DIR = str(tmp_path / "spool")
    settings.USAGE_WRITE_BACKOFF_SECONDS = 60.0  # tests end an outage by hand (postgres.up())
    _reset()
    yield tmp_path / "spool"
    _reset()


class Postgres:
    """Postgres as the request path and the replay see it: `down()` makes every usage write
    fail as an unreachable server does; `writes` counts the attempts."""

    def __init__(self, monkeypatch):
        self.is_down = False
        self.writes = 0
        real_write, real_many = services._write, services.request_records_write

        def write(record, *, timeout):
            self.writes += 1
            if self.is_down:
                raise OperationalError("connection refused")
            return real_write(record, timeout=timeout)

        def write_many(*, records, timeout=None):
            if self.is_down:
                raise OperationalError("connection refused")
            return real_many(records=records, timeout=timeout)

        monkeypatch.setattr(services, "_write", write)
        monkeypatch.setattr(services, "request_records_write", write_many)

    def down(self) -> None:
        self.is_down = True

    def up(self) -> None:
        """Back, and the backoff after the last failure over."""
        self.is_down = False
        services._held_until = 0.0
        spool._replay_held_until = 0.0


@pytest.fixture
def postgres(monkeypatch, spool_dir):
    return Postgres(monkeypatch)


@pytest.fixture
def owner(alice, alice_org):
    from tests.factories.apikeys import issue_key

    return alice_org, issue_key(alice_org, by=alice).key


def make(org, key=None, **changes) -> RequestRecord:
    values = dict(
        request_id=f"req_{uuid.uuid4().hex[:24]}",
        endpoint="chat.completions",
        status_code=200,
        latency_ms=40,
        created_at=timezone.now(),
        org_id=org.pk,
        api_key_id=key.pk if key is not None else None,
        model_name="gemma-4-26b",
        streamed=True,
        client_ip="127.0.0.1",
        prompt_tokens=10,
        completion_tokens=5,
        input_per_mtok=100_000,
        output_per_mtok=400_000,
    )
    values.update(changes)
    return RequestRecord(**values)


def spool_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".jsonl"))


def write_file(folder, records, *, name: str | None = None, tail: bytes = b"") -> str:
    """A spool file as a process that died left it (no lock held)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"usage-20260302T100000-deadhost-{uuid.uuid4().int % 99999}-x.jsonl"
    with open(folder / name, "wb") as file:
        for one in records:
            file.write(spool.encode(one))
        file.write(tail)
    return name


# --- the request path ----------------------------------------------------------------------


def test_a_healthy_write_never_touches_the_spool(postgres, owner, spool_dir):
    org, key = owner
    request_record(record=make(org, key))
    assert UsageEvent.objects.count() == 1
    assert not spool_dir.exists() and not spool.writing()


def test_postgres_down_spools_the_record_and_the_replay_writes_it_exactly_once(
    postgres, owner, spool_dir
):
    org, key = owner
    postgres.down()
    records = [make(org, key) for _ in range(3)] + [make(org, key, completion_tokens=0)]
    records.append(make(org, None, prompt_tokens=0, completion_tokens=0, status_code=401))
    for one in records:
        request_record(record=one)  # no error: the client keeps its answer
    assert RequestLog.objects.count() == 0
    assert spool.pending() == 5
    (name,) = spool_files(spool_dir)

    assert spool.replay() == 0  # still down: nothing replayed, the file stays
    assert spool_files(spool_dir) == [name]

    postgres.up()
    assert spool.replay() == 5
    assert RequestLog.objects.count() == 5
    assert UsageEvent.objects.count() == 4  # the 401 served nothing
    assert event_totals(org) == (
        4,
        40,
        15,
        3 * 3 + 1,
    )  # micro-USD: 3 a served answer, 1 the empty one
    logged = RequestLog.objects.get(request_id=records[0].request_id)
    assert (logged.streamed, logged.latency_ms, logged.created_at) == (
        True,
        40,
        records[0].created_at,
    )
    assert spool_files(spool_dir) == [] and spool.pending() == 0 and not spool.writing()

    assert spool.replay() == 0  # again: nothing changes
    assert (RequestLog.objects.count(), UsageEvent.objects.count()) == (5, 4)


def test_after_a_failure_records_go_straight_to_the_spool_until_the_backoff_ends(
    postgres, owner, spool_dir, settings
):
    org, key = owner
    postgres.down()
    request_record(record=make(org, key))
    request_record(record=make(org, key))
    assert postgres.writes == 1  # the second did not wait for Postgres
    settings.USAGE_WRITE_BACKOFF_SECONDS = 0.0
    services._held_until = 1e-9  # the backoff is over: the next record tries Postgres
    postgres.is_down = False
    request_record(record=make(org, key))
    assert postgres.writes == 2 and UsageEvent.objects.count() == 1
    # The first write that reached Postgres let go of this process's file: any process
    # (a Celery worker, the command, another web process) may replay it now.
    assert not spool.writing()
    (name,) = spool_files(spool_dir)
    fd = os.open(spool_dir / name, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it
    finally:
        os.close(fd)
    assert spool.replay() == 2 and UsageEvent.objects.count() == 3


@pytest.mark.parametrize(
    "error",
    [
        ProgrammingError('column "x" does not exist'),
        DataError("value too long for type character varying(100)"),
        TypeError("a bug"),
    ],
)
def test_an_error_that_is_not_unavailability_is_raised_and_nothing_is_spooled(
    owner, spool_dir, monkeypatch, error
):
    org, key = owner

    def broken(record, *, timeout):
        raise error

    monkeypatch.setattr(services, "_write", broken)
    with pytest.raises(type(error)):
        request_record(record=make(org, key))
    assert not spool_dir.exists() and not services.writes_held()


def test_a_read_only_postgres_counts_as_unavailable():
    import psycopg

    class ReadOnly(psycopg.errors.ReadOnlySqlTransaction):
        pass

    wrapped = InternalError("cannot execute INSERT in a read-only transaction")
    wrapped.__cause__ = ReadOnly("cannot execute INSERT in a read-only transaction")
    assert services.write_unavailable(wrapped)
    assert not services.write_unavailable(InternalError("something else"))


def test_a_disk_that_refuses_the_spool_raises_with_the_record_in_the_log(
    postgres, owner, spool_dir, caplog
):
    org, key = owner
    spool_dir.write_bytes(b"")  # a file where the directory should be: the disk refuses
    postgres.down()
    one = make(org, key)
    with pytest.raises(OSError):
        request_record(record=one)
    assert one.request_id in caplog.text and "usage record lost" in caplog.text


def test_fsync_mode_spools_and_replays_the_same(postgres, owner, spool_dir, settings):
    settings.USAGE_SPOOL_FSYNC = True
    org, key = owner
    postgres.down()
    request_record(record=make(org, key))
    postgres.up()
    assert spool.replay() == 1 and UsageEvent.objects.count() == 1


# --- replay ----------------------------------------------------------------------------------


def test_a_partial_last_line_is_skipped_logged_and_kept_aside(postgres, owner, spool_dir, caplog):
    org, key = owner
    good = [make(org, key), make(org, key)]
    cut = spool.encode(make(org, key))[:57]  # the writer stopped mid-line
    name = write_file(spool_dir, good, tail=cut)

    assert spool.replay() == 2
    assert UsageEvent.objects.count() == 2
    assert spool_files(spool_dir) == []
    assert "partial line" in caplog.text
    assert (spool_dir / name.replace(".jsonl", ".rejected")).read_bytes() == cut + b"\n"


def test_an_unreadable_line_does_not_block_the_rest(postgres, owner, spool_dir, caplog):
    org, key = owner
    first, last = make(org, key), make(org, key)
    name = write_file(spool_dir, [first])
    with open(spool_dir / name, "ab") as file:
        file.write(b'{"v":1,"request_id":"req_x"}\n')  # fields missing
        file.write(b"\x00\x00garbage\n")
        file.write(spool.encode(last))

    assert spool.replay() == 2
    assert set(UsageEvent.objects.values_list("request_id", flat=True)) == {
        first.request_id,
        last.request_id,
    }
    assert caplog.text.count("unreadable line") == 2
    assert len((spool_dir / name.replace(".jsonl", ".rejected")).read_bytes().splitlines()) == 2


def test_a_record_postgres_refuses_is_set_aside_and_the_rest_written(postgres, owner, spool_dir):
    org, key = owner
    records = [make(org, key) for _ in range(5)]
    records[2].latency_ms = -1  # latency_ms >= 0: Postgres refuses the row (a bug)
    name = write_file(spool_dir, records)

    assert spool.replay() == 4
    assert UsageEvent.objects.count() == 4
    aside = (spool_dir / name.replace(".jsonl", ".rejected")).read_bytes()
    assert spool.decode(aside).request_id == records[2].request_id
    assert spool_files(spool_dir) == []


def test_files_of_two_processes_a_live_writer_s_file_waits(postgres, owner, spool_dir):
    org, key = owner
    write_file(spool_dir, [make(org, key) for _ in range(3)])  # a dead process's
    live = write_file(spool_dir, [make(org, key) for _ in range(2)])
    fd = os.open(spool_dir / live, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its process is alive and may still append
    try:
        assert spool.replay() == 3
        assert spool_files(spool_dir) == [live]
        assert UsageEvent.objects.count() == 3
    finally:
        os.close(fd)  # the process died (or sealed its file)
    assert spool.replay() == 2
    assert spool_files(spool_dir) == [] and UsageEvent.objects.count() == 5


def test_a_replay_cut_short_leaves_the_file_whole_and_the_next_writes_each_record_once(
    postgres, owner, spool_dir, monkeypatch
):
    org, key = owner
    monkeypatch.setattr(spool, "_BATCH", 2)
    records = [make(org, key) for _ in range(5)]
    name = write_file(spool_dir, records)
    real, batches = services.request_records_write, []

    def fails_on_the_second_batch(*, records, timeout=None):
        batches.append(records)
        if len(batches) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(records=records, timeout=timeout)

    monkeypatch.setattr(services, "request_records_write", fails_on_the_second_batch)
    assert spool.replay() == 0  # the file was not finished: nothing taken out of the spool
    assert UsageEvent.objects.count() == 2
    assert spool_files(spool_dir) == [name]
    assert spool.replay() == 0  # the replay waits out the backoff

    spool._replay_held_until = 0.0
    assert spool.replay() == 5
    assert UsageEvent.objects.count() == 5
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == sorted(
        r.request_id for r in records
    )


def test_a_process_replays_its_own_open_file_in_place(postgres, owner, spool_dir):
    org, key = owner
    postgres.down()
    for _ in range(3):
        request_record(record=make(org, key))
    assert spool.writing()
    postgres.up()
    assert spool.replay() == 3  # no request came to seal the file: the process replays it
    assert not spool.writing() and spool_files(spool_dir) == []
    assert UsageEvent.objects.count() == 3


def test_replay_waits_while_the_request_path_is_spooling(postgres, owner, spool_dir):
    org, key = owner
    postgres.down()
    request_record(record=make(org, key))
    postgres.is_down = False  # back, but the request path's backoff is not over
    assert spool.replay() == 0
    services._held_until = 0.0
    assert spool.replay() == 1


def test_replay_with_an_empty_or_missing_spool_is_nothing(spool_dir):
    assert spool.replay() == 0 and spool.pending() == 0
    spool_dir.mkdir()
    assert spool.replay() == 0 and spool.pending() == 0


def test_limit_starts_no_new_file_past_it(postgres, owner, spool_dir):
    org, key = owner
    for _ in range(3):
        write_file(spool_dir, [make(org, key), make(org, key)])
    assert spool.replay(limit=3) == 4  # files are replayed whole
    assert spool.replay(limit=1) == 2
    assert UsageEvent.objects.count() == 6


def test_an_abandoned_temporary_file_is_swept(spool_dir):
    spool_dir.mkdir()
    old, fresh = spool_dir / ".usage-old.tmp", spool_dir / ".usage-new.tmp"
    old.touch()
    fresh.touch()
    os.utime(old, (0, 0))
    spool.replay()
    assert not old.exists() and fresh.exists()


@pytest.mark.django_db(transaction=True)
def test_replayers_on_threads_write_each_record_once(spool_dir, owner):
    org, key = owner
    for _ in range(4):
        write_file(spool_dir, [make(org, key) for _ in range(25)])
    replayed = run_concurrently(spool.replay, spool.replay, spool.replay)
    assert sum(replayed) == 100
    assert UsageEvent.objects.count() == 100 and spool_files(spool_dir) == []


@pytest.mark.django_db(transaction=True)
def test_replayers_in_separate_processes_write_each_record_once(spool_dir, owner):
    """Three `manage.py usage_spool_replay` at once over six dead processes' files: each
    file is taken by one of them, so the counts add up to the records, each written once."""
    if connection.vendor != "postgresql":
        if IN_CI:
            pytest.fail("CI=true: this test needs Postgres", pytrace=False)
        pytest.skip("needs Postgres (the replayers are other processes)")
    org, key = owner
    records = [make(org, key) for _ in range(6 * 120)]
    for i in range(6):
        write_file(spool_dir, records[i * 120 : (i + 1) * 120])
    env = base_env(DATABASE_URL=database_url(), USAGE_SPOOL_DIR=str(spool_dir))
    command = [sys.executable, "manage.py", "usage_spool_replay"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    replayed = [int(re.search(r"Replayed (\d+)", out).group(1)) for out in outputs]
    assert sum(replayed) == 720, outputs
    assert UsageEvent.objects.count() == 720 and RequestLog.objects.count() == 720
    assert spool_files(spool_dir) == []


# --- a late record in rollups and the ledger -------------------------------------------------


def test_a_record_replayed_after_its_hour_was_billed_is_rolled_up_and_billed_once(
    postgres, alice_org, spool_dir
):
    """The rollup counts events by their own mark (`rolled_up_at`), not by time; the ledger
    re-checks hours whose rollups changed since its last run: an event inserted hours after
    its hour was billed is an adjustment, once."""
    ten = MONDAY.replace(hour=10)
    record(alice_org, at=ten + timedelta(minutes=5))
    postgres.down()
    late = record(alice_org, at=ten + timedelta(minutes=30))  # spooled
    usage_rollup_pending(now=ten + timedelta(hours=2))
    ledger_post_closed_hours(now=ten + timedelta(hours=2), lag=timedelta(0))
    assert ledger_usage_totals(alice_org)[0] == 1  # hour 10 billed without the spooled one

    postgres.up()
    assert spool.replay() == 1  # three hours later
    assert UsageEvent.objects.get(request_id=late).created_at == ten + timedelta(minutes=30)
    usage_rollup_pending(now=ten + timedelta(hours=3))
    ledger_post_closed_hours(now=ten + timedelta(hours=3), lag=timedelta(0))
    ledger_post_closed_hours(now=ten + timedelta(hours=4), lag=timedelta(0))  # nothing more

    truth = event_totals(alice_org)
    assert truth[0] == 2
    assert rollup_totals(alice_org) == truth
    assert rollup_totals(alice_org, granularity="day") == truth
    assert ledger_usage_totals(alice_org) == truth
    assert list(
        LedgerEntry.objects.filter(org=alice_org).order_by("id").values_list("kind", "requests")
    ) == [("usage", 1), ("adjustment", 1)]
