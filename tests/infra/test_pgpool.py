"""infra.pgpool: the pooled backend of the gevent server, and the request path's one
write on a pooled connection of its own (run_pooled, used by metering/services.py)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.db import IntegrityError, connections
from django.utils import timezone

from infra.pgpool import base as pgpool_base
from infra.pgpool.base import DatabaseWrapper, run_pooled
from metering.models import RequestLog, UsageEvent
from metering.services import RequestRecord, _write_postgres
from tests.factories.apikeys import issue_key

IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pooled():
    default = connections["default"]
    if default.vendor != "postgresql":
        if IN_CI:
            pytest.fail("CI=true: these tests need Postgres", pytrace=False)
        pytest.skip("needs Postgres")
    settings_dict = {
        **default.settings_dict,
        "ENGINE": "infra.pgpool",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "OPTIONS": {
            **default.settings_dict.get("OPTIONS", {}),
            "pool": {"min_size": 1, "max_size": 2},
        },
    }
    wrapper = DatabaseWrapper(settings_dict, alias=f"pooled_{uuid.uuid4().hex[:8]}")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def _record(org, key, **changes) -> RequestRecord:
    values = dict(
        request_id=f"req_{uuid.uuid4().hex[:24]}",
        endpoint="chat.completions",
        status_code=200,
        latency_ms=3,
        created_at=timezone.now(),
        org_id=org.pk,
        api_key_id=key.pk,
        model_name="m",
        route_id=1,
        router_id=1,
        ttfb_ms=2,
        client_ip="127.0.0.1",
        prompt_tokens=10,
        completion_tokens=5,
        input_per_mtok=1_000_000,
        output_per_mtok=2_000_000,
    )
    values.update(changes)
    return RequestRecord(**values)


@pytest.fixture
def owner(alice, alice_org):
    return alice_org, issue_key(alice_org, by=alice).key


@pytest.mark.parametrize("prepare", [True, False])
def test_the_write_commits_on_its_own_connection(pooled, owner, settings, prepare):
    settings.DB_PREPARED_STATEMENTS = prepare
    org, key = owner
    records = [_record(org, key) for _ in range(7)]  # past psycopg's prepare threshold
    for record in records:
        _write_postgres(pooled, record, served=True)
    _write_postgres(pooled, records[0], served=True)  # a repeated write changes nothing
    ids = [r.request_id for r in records]
    assert RequestLog.objects.filter(request_id__in=ids).count() == 7
    events = UsageEvent.objects.filter(request_id__in=ids)
    assert events.count() == 7
    assert {e.cost for e in events} == {10 * 1 + 5 * 2}
    assert pooled.connection is None  # Django's own per-thread connection was never opened
    # The server holds the statement prepared (or not) on the connection that ran it.
    connection = pooled.pool.getconn()
    try:
        prepared = connection.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%INSERT INTO "usage_events"%'],
        ).fetchone()[0]
    finally:
        pooled.pool.putconn(connection)
    assert prepared == (1 if prepare else 0)


def test_inside_a_transaction_the_caller_s_connection_is_used(pooled):
    pooled.set_autocommit(False)  # as inside transaction.atomic()
    pooled.in_atomic_block = True
    try:
        assert run_pooled(pooled, "SELECT 1", []) is False
    finally:
        pooled.in_atomic_block = False
        pooled.rollback()
        pooled.set_autocommit(True)


def test_a_wrapper_without_a_pool_is_left_to_django():
    assert run_pooled(connections["default"], "SELECT 1", []) is False


def _drop_idle_connections(pooled) -> None:
    """Terminate the backends of every idle connection in the pool and wait until they are gone."""
    pooled.pool.open()
    pooled.pool.wait()
    idle = [pooled.pool.getconn() for _ in range(pooled.pool.get_stats()["pool_available"])]
    pids = [conn.info.backend_pid for conn in idle]
    for conn in idle:
        pooled.pool.putconn(conn)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.01)


def test_a_connection_the_server_dropped_is_replaced_at_checkout(pooled, owner):
    org, key = owner
    _write_postgres(pooled, _record(org, key), served=True)  # the pool now holds an idle connection
    _drop_idle_connections(pooled)
    record = _record(org, key)
    _write_postgres(pooled, record, served=True)
    assert RequestLog.objects.filter(request_id=record.request_id).exists()


def test_a_connection_dropped_after_the_check_is_retried_once(pooled, owner, monkeypatch):
    org, key = owner
    _write_postgres(pooled, _record(org, key), served=True)
    _drop_idle_connections(pooled)
    real_check, missed = pgpool_base.usable, []

    def check_misses_once(connection):
        if not missed:
            missed.append(connection)
            return True  # the server drops it just after the check
        return real_check(connection)

    monkeypatch.setattr(pgpool_base, "usable", check_misses_once)
    record = _record(org, key)
    _write_postgres(pooled, record, served=True)
    assert UsageEvent.objects.filter(request_id=record.request_id).count() == 1
    assert missed and missed[0].closed  # the statement failed on it, and it was dropped


def test_a_connection_left_outside_autocommit_still_commits(pooled, owner):
    org, key = owner
    pooled.pool.open()
    conn = pooled.pool.getconn()
    conn.autocommit = False
    pooled.pool.putconn(conn)
    record = _record(org, key)
    _write_postgres(pooled, record, served=True)
    assert RequestLog.objects.filter(request_id=record.request_id).exists()


def test_database_errors_arrive_as_django_errors(pooled, owner):
    org, key = owner
    with pytest.raises(IntegrityError):
        _write_postgres(pooled, _record(org, key, latency_ms=-1), served=False)  # latency_ms >= 0
    record = _record(org, key)
    _write_postgres(pooled, record, served=False)  # the pool is fine afterwards
    assert RequestLog.objects.filter(request_id=record.request_id).exists()


def test_a_thread_holding_a_connection_writes_on_it(pooled, owner):
    """Taking a second connection while holding one could deadlock a small pool."""
    org, key = owner
    with pooled.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert pooled.connection is not None
    assert run_pooled(pooled, "SELECT 1", []) is False
    record = _record(org, key)
    _write_postgres(pooled, record, served=True)  # through the held connection
    assert RequestLog.objects.filter(request_id=record.request_id).exists()
