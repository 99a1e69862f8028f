"""`DatabaseWrapper`: Django's PostgreSQL wrapper, checking pooled connections cheaply.

psycopg_pool's check (Django's CONN_HEALTH_CHECKS with a pool) sends a query on every
checkout: one more round trip per request, about a seventh of the gateway's CPU under
load. This wrapper looks at the connection instead. A backend that was terminated
(server restart, pg_terminate_backend, idle timeout) sends an error and closes its end
while the connection sits idle in the pool, so the socket turns readable; a healthy idle
connection has nothing to read. A connection that fails the check is closed and handed
back (the pool replaces it) and the next one is tried.
"""

from __future__ import annotations

from functools import partial
from time import monotonic

import psycopg
from django.db import OperationalError as DjangoOperationalError
from django.db import connections
from django.db.backends.postgresql import base
from psycopg import pq

try:  # under gevent, the real select: a zero-timeout look must not switch greenlets
    from gevent import get_hub
    from gevent.monkey import get_original, is_module_patched
    from greenlet import getcurrent

    _select = get_original("select", "select")
except ImportError:  # gevent is not installed
    from select import select as _select

    def is_module_patched(name: str) -> bool:
        return False


class DeadlineExceeded(psycopg.OperationalError):
    """A statement had no answer within its caller's deadline (`run_pooled`'s `timeout`)."""


def usable(connection) -> bool:
    """True when an idle connection from the pool can take a query."""
    pgconn = connection.pgconn
    if connection.closed or pgconn.status != pq.ConnStatus.OK:
        return False
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    readable, _, _ = _select([pgconn.socket], [], [], 0)
    return not readable  # unsolicited input on an idle connection: the server is closing it


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if self.pool is None:
            return super().get_new_connection(conn_params)
        return _first_usable(
            self.pool, lambda: super(DatabaseWrapper, self).get_new_connection(conn_params)
        )


def _first_usable(pool, take):
    """The first usable connection `take()` gives from `pool`. Every idle connection may be
    dead after a server restart: each dead one is closed and handed back (the pool opens a
    replacement), so after them all comes a new one."""
    connection = take()
    for _ in range(pool.max_size + 1):
        if usable(connection):
            return connection
        connection.close()
        pool.putconn(connection)
        connection = take()
    return connection


# psycopg prepares a statement after this many executions, or at once with prepare=True.
_ONLY_WHEN_ASKED = 2**31 - 1


def run_pooled(
    wrapper,
    sql: str,
    params,
    *,
    prepare: bool = True,
    many: bool = False,
    timeout: float | None = None,
) -> bool:
    """Run one statement on its own pooled connection, in autocommit, bypassing Django's
    per-request connection set-up (a checkout, time zone and role checks, signals).
    Errors are Django's (IntegrityError, OperationalError, ...), as from a cursor.

    For the request path's one write (metering/services.py). `prepare`: a server-side
    prepared statement, parsed and planned once per connection. `many`: `params` is a list
    of parameter sets, sent in one pipeline (each its own autocommitted statement).
    `timeout` (seconds): a deadline for the whole call, the wait for a pooled connection
    and, under gevent, the statement's answer; past it, OperationalError (a statement cut
    off has its connection closed: it may still commit on the server). Returns False,
    having done nothing, when `wrapper` has no pool, is inside a transaction or already
    holds a connection: the caller then goes through Django's cursor. The statement must
    be idempotent: when the server drops the connection under it, it is sent once more on
    another.
    """
    pool = wrapper.pool if isinstance(wrapper, DatabaseWrapper) else None
    if pool is None or wrapper.in_atomic_block or wrapper.connection is not None:
        # No pool; the caller's transaction; or this thread already holds a pooled
        # connection: taking a second while holding one could empty the pool between
        # holders waiting on each other.
        return False
    if pool.closed:
        pool.open()
    deadline = None if timeout is None else monotonic() + timeout
    take = pool.getconn if deadline is None else partial(_getconn_before, pool, deadline)
    for attempt in (1, 2):
        with wrapper.wrap_database_errors:  # a pool timeout is an OperationalError like others
            connection = _first_usable(pool, take)
        try:
            if not connection.autocommit:
                connection.autocommit = True  # the statement commits by itself
            if prepare and connection.prepare_threshold is None:
                # Django opens connections with prepare_threshold=None, with which psycopg
                # ignores `prepare=True`. Its own cursors bind client-side and never prepare,
                # so this enables preparing for statements that ask for it, and only them.
                connection.prepare_threshold = _ONLY_WHEN_ASKED
            # A plain (server-binding) cursor: Django's connections default to client-side
            # binding, which cannot prepare.
            with wrapper.wrap_database_errors, psycopg.Cursor(connection) as cursor:
                watched = _watched(deadline)  # under gevent: no answer by then, interrupted
                try:
                    if many:
                        cursor.executemany(sql, params)
                    else:
                        cursor.execute(sql, params, prepare=prepare or None)
                finally:
                    if watched is not None:
                        _running.pop(watched, None)
            return True
        except DjangoOperationalError as error:
            if isinstance(error.__cause__, DeadlineExceeded):
                connection.close()  # cut off mid-statement: the pool replaces it
                raise
            # The server dropped this connection between the check and the statement (a
            # restart, a terminated backend). Callers' statements are idempotent: once more
            # on another connection.
            if attempt == 2 or not connection.broken:
                raise
        finally:
            pool.putconn(connection)  # a broken connection is discarded and replaced
    return True


def _getconn_before(pool, deadline: float):
    # psycopg_pool refuses at once, even with a connection idle, when given no time at all
    return pool.getconn(timeout=max(deadline - monotonic(), 0.001))


# Statements running under a deadline on the gevent server: greenlet -> (deadline, hub). One
# timer per hub looks at them a few times a second and interrupts the overdue ones, so a
# statement pays two dict operations for its deadline, not a timer of its own.
_running: dict = {}
_watching: dict = {}  # hub -> its timer
_WATCH_INTERVAL = 0.1


def _watched(deadline: float | None):
    """The current greenlet, registered to be interrupted past `deadline`; None when there
    is no deadline or no gevent (then nothing interrupts the statement)."""
    if deadline is None or not is_module_patched("socket"):
        return None
    hub = get_hub()
    if hub not in _watching:  # this process's (this thread's) first statement with a deadline
        timer = hub.loop.timer(_WATCH_INTERVAL, _WATCH_INTERVAL, ref=False)
        timer.start(_interrupt_overdue, hub)
        _watching[hub] = timer
    current = getcurrent()
    _running[current] = (deadline, hub)
    return current


def _interrupt_overdue(hub) -> None:
    """In `hub`: raise DeadlineExceeded in each of its greenlets whose statement is past its
    deadline. A registered greenlet is suspended inside its statement's wait (it leaves the
    registry before its next switch), so that is where the error lands; run_pooled then
    closes the connection."""
    if not _running:
        return
    now = monotonic()
    for waiting, (deadline, home) in list(_running.items()):
        if deadline <= now and home is hub and _running.pop(waiting, None) is not None:
            waiting.throw(DeadlineExceeded("no answer within the deadline"))


def release_pooled(alias: str = "default") -> None:
    """Hand this thread's (greenlet's) pooled connection back now, if it holds one.

    Django keeps a request's connection until the request ends; a gateway request that
    read Postgres on a cold cache would then hold a pooled connection through the whole
    router call, and a burst of such requests would empty the pool. Called before
    forwarding. No-op without a pool or inside a transaction."""
    wrapper = getattr(connections._connections, alias, None)  # never creates a wrapper
    if (
        wrapper is not None
        and wrapper.connection is not None
        and isinstance(wrapper, DatabaseWrapper)
        and wrapper.pool is not None
        and not wrapper.in_atomic_block
    ):
        wrapper.close()
