"""run_pooled's deadline (`timeout`) and batches (`many`): the request path's usage write
gives up in time when Postgres cannot answer, and the usage spool's replay sends its
records in one pipeline (metering/services.py, metering/spool.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from infra.pgpool.base import DatabaseWrapper, DeadlineExceeded, run_pooled
from metering import spool
from metering.models import RequestLog, UsageEvent
from metering.services import RequestRecord, _params, _statements
from tests.support.ci import IN_CI
from tests.support.processes import ROOT, base_env, database_url

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


def test_a_batch_of_spooled_records_is_one_pipeline_and_idempotent(pooled, alice_org):
    # As the replay reads them back: ids as strings, times parsed from ISO text.
    records = [
        spool.decode(
            spool.encode(
                RequestRecord(
                    request_id=f"req_{uuid.uuid4().hex[:24]}",
                    endpoint="chat.completions",
                    status_code=200,
                    latency_ms=5,
                    created_at=timezone.now(),
                    org_id=alice_org.pk,
                    model_name="m",
                    prompt_tokens=10,
                    completion_tokens=5,
                    input_per_mtok=1_000_000,
                    output_per_mtok=2_000_000,
                )
            )
        )
        for _ in range(30)
    ]
    assert isinstance(records[0].org_id, str)
    _, with_event = _statements(pooled.ops.quote_name)
    rows = [_params(record, True) for record in records]
    assert run_pooled(pooled, with_event, rows, many=True, timeout=5)
    assert run_pooled(pooled, with_event, rows, many=True, timeout=5)  # again: nothing changes
    ids = [r.request_id for r in records]
    assert RequestLog.objects.filter(request_id__in=ids).count() == 30
    assert UsageEvent.objects.filter(request_id__in=ids).count() == 30
    assert {e.cost for e in UsageEvent.objects.filter(request_id__in=ids)} == {20}


def test_no_connection_free_within_the_deadline_is_an_operational_error_in_time(pooled):
    pooled.pool.open()
    held = [pooled.pool.getconn() for _ in range(2)]  # the whole pool, busy
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            run_pooled(pooled, "SELECT 1", [], timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2
    finally:
        for connection in held:
            pooled.pool.putconn(connection)
    assert run_pooled(pooled, "SELECT 1", [], timeout=0.3)  # and the pool is whole


_GEVENT_PROBE = """
from gevent import monkey
monkey.patch_all()
import json, os, sys, time
import django
django.setup()
from django.db import OperationalError, connections
from infra.pgpool.base import DeadlineExceeded, _running, run_pooled
connection = connections["default"]
started = time.monotonic()
try:
    run_pooled(connection, "SELECT pg_sleep(5)", [], timeout=0.5)
    outcome = "answered"
except OperationalError as error:
    outcome = type(error.__cause__).__name__
took = time.monotonic() - started
after = run_pooled(connection, "SELECT 1", [], timeout=2)
print(json.dumps({"outcome": outcome, "took": took, "after": after, "left": len(_running)}))
"""


def test_under_gevent_a_statement_without_an_answer_is_cut_off_at_the_deadline():
    """A server that stops answering (here: a statement that outlasts the deadline) costs the
    caller the deadline, not TCP's patience; the connection is dropped and the pool goes on."""
    if connections["default"].vendor != "postgresql":
        if IN_CI:
            pytest.fail("CI=true: this test needs Postgres", pytrace=False)
        pytest.skip("needs Postgres")
    env = base_env(DATABASE_URL=database_url(), DB_POOL_MAX_SIZE="2", LOG_LEVEL="ERROR")
    done = subprocess.run(
        [sys.executable, "-c", _GEVENT_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == DeadlineExceeded.__name__
    assert 0.45 < result["took"] < 1.5
    assert result["after"] is True and result["left"] == 0
