"""The usage spool: request records Postgres could not take in time, kept on local disk and
written into Postgres later, exactly once.

`metering.services.request_record` appends a record here when Postgres is down, unreachable,
read-only or slower than USAGE_WRITE_TIMEOUT_SECONDS, so a request that served content is
never answered late or with an error because of Postgres, and its usage is not lost.
`replay()` writes the spool into Postgres with the gateway's own idempotent insert (ON
CONFLICT on the request id does nothing), so a record written twice, by two replayers or
by a replay and a statement that committed after its deadline, counts once.

Files: USAGE_SPOOL_DIR holds one append-only file per writing process,
`usage-<UTC time>-<host>-<pid>-<random>.jsonl`, one JSON object (a RequestRecord) per line,
each line written with one `write()` on an O_APPEND descriptor. The process holds an
exclusive `flock` on its file while it may append to it: the lock is taken before the
file gets a name replayers look at, and the kernel drops it when the process dies. It lets
go of the file (`seal()`) on its first write that reaches Postgres again. A replayer takes
a file only with LOCK_EX|LOCK_NB, so a file is replayed by one process at a time and never
while it is written; it is deleted only after every record in it is in Postgres, so a
replay cut short (a crash, Postgres failing again) leaves it whole, and the next replay
writes it again, changing nothing for the records already in. A writing process replays
its own file in place. Lines that cannot be read (a partial last line: the disk filled up
or the machine stopped mid-write) and records Postgres refuses as wrong are logged and kept
beside the file as `<name>.rejected`, never blocking the rest.

Durability: why a local file and not a Redis stream: the failure it covers is Postgres
being unavailable, and it must not need another network service to be up at the same
moment. A record is in the spool once `append()` returned. It then survives the process
being killed (it is in the kernel's page cache), and is replayed by any process on the
host (each web process's background loop calls `replay()`, as do `manage.py
usage_spool_replay` and the `metering.replay_usage_spool` task where a Celery worker shares
the host). It survives a kernel crash or power loss only with USAGE_SPOOL_FSYNC=true (a disk
flush per spooled record, only while Postgres is failing; the healthy path never touches
the spool), and the loss of the machine or container only when USAGE_SPOOL_DIR is on a
persistent volume that a replacement mounts. A Redis stream with appendfsync everysec
would survive a machine loss but lose up to a second, and be unavailable exactly when the
network is the problem.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic

from django.conf import settings

from metering.spoolrecords import decode, encode

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"  # a file replayers take; a file being created is `.<name>.tmp`
REJECTED = ".rejected"
_BATCH = 100  # records per replay statement pipeline
_ABANDONED_SECONDS = 60


@dataclass
class _Writer:
    fd: int
    path: Path
    pid: int
    replayed_bytes: int = 0  # this process has replayed its own file up to here
    replayed_lines: int = 0


_lock = threading.Lock()  # appends, and opening and closing this process's file
_replaying = threading.Lock()  # one replay at a time per process
_writer: _Writer | None = None
_replay_held_until = 0.0  # after a replay found Postgres unavailable (monotonic seconds)


class _Unavailable(Exception):
    """Postgres cannot take the replay's writes now: stop, keep the file."""


def directory() -> Path:
    return Path(settings.USAGE_SPOOL_DIR)


# --- writing ---------------------------------------------------------------------------------


def append(record) -> None:
    """Add `record` to this process's spool file (opened on first use); durable as the module
    docstring says once this returns. Raises OSError when the disk refuses it."""
    global _writer
    line = encode(record)
    with _lock:
        writer = _writer
        if writer is None or writer.pid != os.getpid():
            if writer is not None:  # the parent's, inherited by a fork: its lock stays the parent's
                with contextlib.suppress(OSError):
                    os.close(writer.fd)
            writer = _writer = _open()
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(writer.fd, view) :]
            if settings.USAGE_SPOOL_FSYNC:
                os.fsync(writer.fd)
        except OSError:
            # The file may now end in part of this line: nothing more is appended to it.
            _writer = None
            os.close(writer.fd)
            raise


def _open() -> _Writer:
    folder = directory()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = os.getpid()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"usage-{stamp}-{_HOST}-{pid}-{uuid.uuid4().hex[:8]}"
    temp = folder / f".{name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = folder / f"{name}{SUFFIX}"
        os.rename(temp, path)  # locked before it has a name replayers take
        if settings.USAGE_SPOOL_FSYNC:
            _fsync_directory(folder)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return _Writer(fd=fd, path=path, pid=pid)


_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:40] or "host"


def writing() -> bool:
    """Whether this process has a spool file open (cheap: for the request path)."""
    return _writer is not None


def seal() -> None:
    """Stop appending to this process's file and let go of it: any process may replay it now.
    The next `append()` opens a new file."""
    global _writer
    with _lock:
        writer, _writer = _writer, None
        if writer is not None:
            os.close(writer.fd)  # (a forked child's copy: the parent's lock stays)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- replaying -------------------------------------------------------------------------------


def replay(limit: int | None = None) -> int:
    """Write spooled records into Postgres, delete the files that are all in; returns how many
    records were taken out of the spool. Safe to call often and from any number of processes
    at once: with an empty spool it is one directory listing; a file is taken by one replayer
    at a time, whole. `limit`: start no new file once this many records were replayed.

    Postgres failing again stops the replay (the files stay) and pauses this process's
    replays for USAGE_WRITE_BACKOFF_SECONDS; they also wait while the request path is
    spooling (it just failed to write). Never raises for an unavailable Postgres.
    """
    global _replay_held_until
    folder = directory()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    files = sorted(name for name in names if name.endswith(SUFFIX) and not name.startswith("."))
    if len(files) < len(names):
        _sweep_abandoned(folder, names)
    if not files:
        return 0
    from metering import services

    if services.writes_held() or monotonic() < _replay_held_until:
        return 0
    if not _replaying.acquire(blocking=False):
        return 0  # another greenlet or thread of this process is at it
    done = 0
    try:
        done += _replay_own()
        for name in files:
            if limit is not None and done >= limit:
                break
            done += _replay_file(folder / name)
    except _Unavailable as stop:
        _replay_held_until = monotonic() + settings.USAGE_WRITE_BACKOFF_SECONDS
        logger.warning(
            "usage spool replay stopped, Postgres is unavailable (%s); %d record(s) replayed",
            stop.__cause__,
            done,
        )
    finally:
        _replaying.release()
    if done:
        logger.warning("usage spool: %d record(s) written into Postgres", done)
    return done


def pending() -> int:
    """Records waiting in the spool (lines in its files), for health and metrics: one
    directory listing when it is empty. Counts the lines of a live process's file that
    process has replayed but not yet deleted, except this process's own."""
    folder = directory()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    total = 0
    for name in names:
        if not name.endswith(SUFFIX) or name.startswith("."):
            continue
        try:
            with open(folder / name, "rb") as file:
                while chunk := file.read(1 << 20):
                    total += chunk.count(b"\n")
        except FileNotFoundError:
            continue  # replayed meanwhile
    writer = _writer
    if writer is not None and writer.pid == os.getpid():
        total -= writer.replayed_lines
    return max(total, 0)


def _replay_own() -> int:
    """This process's open file: replay what was appended since the last time; delete the
    file (and start a new one on the next append) when nothing came meanwhile."""
    global _writer
    with _lock:
        writer = _writer
        if writer is None or writer.pid != os.getpid():
            return 0
        size = os.fstat(writer.fd).st_size
    if size == writer.replayed_bytes:
        return 0
    with open(writer.path, "rb") as file:
        file.seek(writer.replayed_bytes)
        data = file.read(size - writer.replayed_bytes)
    end = data.rfind(b"\n") + 1  # a line still being written (another thread) waits
    lines = data[:end].count(b"\n")
    done = _write_records(_parse(data[:end], writer.path), writer.path)
    writer.replayed_bytes += end
    writer.replayed_lines += lines
    with _lock:
        if _writer is writer and os.fstat(writer.fd).st_size == writer.replayed_bytes:
            os.unlink(writer.path)
            os.close(writer.fd)
            _writer = None
    return done


def _replay_file(path: Path) -> int:
    """Another process's file (or a sealed one of this process), if no one holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # replayed and deleted since the listing
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its process is writing it, or another replayer has it
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return 0
        except FileNotFoundError:
            return 0  # another replayer finished it between our open and our lock
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.error(
                "usage spool %s ends in a partial line (%d bytes; its writer stopped mid-write): "
                "skipped, kept in %s",
                path.name,
                len(data) - end,
                path.with_suffix(REJECTED).name,
            )
            _set_aside(path, [data[end:] + b"\n"])
        done = _write_records(_parse(data[:end], path), path)
        os.unlink(path)  # every record is in Postgres (or set aside)
        if settings.USAGE_SPOOL_FSYNC:
            _fsync_directory(path.parent)
        return done
    finally:
        os.close(fd)  # and with it the lock


def _parse(data: bytes, path: Path) -> list:
    records = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            records.append(decode(line))
        except (ValueError, TypeError, KeyError) as error:
            logger.error(
                "usage spool %s: an unreadable line skipped (%s), kept in %s: %r",
                path.name,
                error,
                path.with_suffix(REJECTED).name,
                line[:300],
            )
            _set_aside(path, [line + b"\n"])
    return records


def _write_records(records: list, path: Path) -> int:
    """Write `records` in batches; returns how many are in Postgres now. A record Postgres
    refuses as wrong is set aside; Postgres unavailable raises _Unavailable."""
    from metering import services

    timeout = settings.USAGE_WRITE_TIMEOUT_SECONDS
    done = 0
    for start in range(0, len(records), _BATCH):
        batch = records[start : start + _BATCH]
        try:
            services.request_records_write(records=batch, timeout=timeout)
            done += len(batch)
            continue
        except Exception as error:
            if services.write_unavailable(error):
                raise _Unavailable from error
        for record in batch:  # one refused record fails its batch: find it, write the rest
            try:
                services.request_records_write(records=[record], timeout=timeout)
                done += 1
            except Exception as error:
                if services.write_unavailable(error):
                    raise _Unavailable from error
                logger.exception(
                    "usage spool %s: Postgres refused request %s; kept in %s",
                    path.name,
                    record.request_id,
                    path.with_suffix(REJECTED).name,
                )
                _set_aside(path, [encode(record)])
    return done


def _set_aside(path: Path, lines: list[bytes]) -> None:
    with open(path.with_suffix(REJECTED), "ab") as file:
        file.writelines(lines)


def _sweep_abandoned(folder: Path, names: list[str]) -> None:
    """Delete `.<name>.tmp` files whose creator died between creating and naming them: empty
    (nothing is written before the rename) and older than a creation takes."""
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        path = folder / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            status = os.fstat(fd)
            if status.st_size == 0 and status.st_mtime < time.time() - _ABANDONED_SECONDS:
                os.unlink(path)
        except (BlockingIOError, FileNotFoundError):
            pass  # being created right now, or gone
        finally:
            os.close(fd)
