"""Metering throughput: usage rollups over synthetic usage events, and what the usage write costs a request.

    .venv/bin/python bench/rollup.py                      # 1,000,000 events, 1 rollup worker
    .venv/bin/python bench/rollup.py --events 200000 --workers 2
    .venv/bin/python bench/rollup.py --events 0 --records 5000   # only the request_record timing

Uses its own Postgres database (`portal_bench_rollup`, created and migrated on first
use; its metering tables are emptied each run) at BENCH_PG (default
postgres://postgres@127.0.0.1:5432). Production-like settings: DEBUG off.

1. loads N usage events with COPY (spread over --days, --orgs orgs x --keys keys x
   --models models, in roughly time order as the gateway writes them), all pending;
2. times `usage_rollup_pending` (the scheduled task's service) until every event is
   rolled up, with --workers processes side by side, and checks rollups == events;
3. times the ledger posting of every closed hour (informational);
4. times `metering.services.request_record` per call: the gateway's durable write of a
   request log + usage event (and of a log alone), one autocommitted call at a time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get(
    "BENCH_ROLLUP_DB", "portal_bench_rollup"
)  # another name: runs side by side
START = datetime(2026, 3, 2, tzinfo=UTC)
MODELS = ["gemma-4-26b", "oss-20b", "oss-120b", "qwen-3-32b", "qwen-3-8b", "gemma-4-9b"]


def configure() -> None:
    os.environ.update(
        PORTAL_ENV_FILE="/nonexistent",
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",
        API_KEY_PEPPER="bench-pepper",
        AUTH_PROVIDER="supabase",
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_JWT_SECRET="bench-jwt-secret",
        DATABASE_URL=f"{PG}/{DB_NAME}",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)  # nothing here touches fast state
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    import django

    django.setup()


def prepare(args) -> tuple[list, list]:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.services import Identity, user_get_or_provision
    from apikeys.services import api_key_create

    call_command("migrate", "--noinput", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE usage_events, usage_rollups, request_logs, billing_ledger, billing_periods, metering_cursors"
        )
    now = timezone.now()
    orgs, keys = [], []
    for i in range(args.orgs):
        user = user_get_or_provision(
            identity=Identity("dev", f"bench-{i}", f"bench{i}@example.com"), now=now
        )
        org = user.personal_org
        org_keys = list(org.api_keys.all()[: args.keys])
        while len(org_keys) < args.keys:
            org_keys.append(
                api_key_create(org=org, created_by=user, name=f"k{len(org_keys)}", now=now).key
            )
        orgs.append(org)
        keys.append(org_keys)
    return orgs, keys


def load_events(args, orgs, keys) -> float:
    """COPY N pending usage events in; returns seconds taken."""
    from django.db import connection

    from metering.pricing import price_micro_usd

    rng = random.Random(7)
    span = args.days * 86_400
    step = span / args.events
    models = MODELS[: args.models]
    prices = {
        m: (rng.randrange(50_000, 300_000), rng.randrange(200_000, 1_200_000)) for m in models
    }
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.connection.cursor()
        copy_sql = (
            "COPY usage_events (request_id, org_id, api_key_id, model_name, prompt_tokens, completion_tokens,"
            " estimated, cost, created_at, usage_capped) FROM STDIN"
        )
        with raw.copy(copy_sql) as copy:
            for i in range(args.events):
                o = rng.randrange(len(orgs))
                key = keys[o][rng.randrange(len(keys[o]))]
                model = models[rng.randrange(len(models))]
                prompt, completion = rng.randrange(1, 4000), rng.randrange(0, 1000)
                cost = price_micro_usd(
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    input_per_mtok=prices[model][0],
                    output_per_mtok=prices[model][1],
                )
                # Time order with jitter: requests commit roughly, not exactly, in start order.
                at = START + timedelta(seconds=max(0.0, i * step - rng.random() * 120))
                copy.write_row(
                    (
                        f"req_b{run}{i:015d}",
                        orgs[o].pk,
                        key.pk,
                        model,
                        prompt,
                        completion,
                        False,
                        cost,
                        at,
                        False,
                    )
                )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE usage_events")
    return time.perf_counter() - started


def _worker(batch_size: int, now: datetime, queue) -> None:
    from django.db import connections

    from metering.rollups import usage_rollup_pending

    try:
        summary = usage_rollup_pending(now=now, batch_size=batch_size)
        queue.put((summary.events, summary.batches))
    finally:
        connections.close_all()


def time_rollups(args) -> dict:
    from django.db import connections

    from metering.rollups import usage_rollup_pending

    now = START + timedelta(days=args.days + 1)
    started = time.perf_counter()
    if args.workers == 1:
        summary = usage_rollup_pending(now=now, batch_size=args.batch_size)
        per_worker = [(summary.events, summary.batches)]
    else:
        connections.close_all()  # children must not share the parent's socket
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_worker, args=(args.batch_size, now, queue))
            for _ in range(args.workers)
        ]
        for p in procs:
            p.start()
        per_worker = [queue.get() for _ in procs]
        for p in procs:
            p.join()
    seconds = time.perf_counter() - started
    events = sum(e for e, _ in per_worker)
    return {
        "events": events,
        "seconds": seconds,
        "per_worker": per_worker,
        "events_per_s": events / seconds,
    }


def check_rollups() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost) FROM usage_events"
        )
        events = cursor.fetchone()
        sums = {}
        for granularity in ("hour", "day"):
            cursor.execute(
                "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost), count(*)"
                " FROM usage_rollups WHERE granularity = %s",
                [granularity],
            )
            *totals, rows = cursor.fetchone()
            sums[granularity] = (tuple(int(v) for v in totals), rows)
        cursor.execute("SELECT count(*) FROM usage_events WHERE rolled_up_at IS NULL")
        pending = cursor.fetchone()[0]
    events = tuple(int(v) for v in events)
    ok = pending == 0 and all(totals == events for totals, _ in sums.values())
    return {
        "ok": ok,
        "pending": pending,
        "hour_buckets": sums["hour"][1],
        "day_buckets": sums["day"][1],
    }


def time_ledger(args) -> dict:
    from django.db import connection

    from metering.ledger import ledger_post_closed_hours

    started = time.perf_counter()
    summary = ledger_post_closed_hours(now=START + timedelta(days=args.days + 1))
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT sum(amount) FROM billing_ledger) = (SELECT sum(cost) FROM usage_events)"
        )
        equal = cursor.fetchone()[0]
    return {
        "entries": summary.usage_entries,
        "seconds": seconds,
        "ledger_equals_events": bool(equal),
    }


def time_request_record(args, orgs, keys) -> dict:
    from django.utils import timezone

    from metering.services import RequestRecord, request_record

    run = uuid.uuid4().hex[:8]

    def call(i: int, served: bool) -> float:
        record = RequestRecord(
            request_id=f"req_r{run}{int(served)}{i:014d}",
            endpoint="chat.completions",
            status_code=200 if served else 429,
            latency_ms=40,
            created_at=timezone.now(),
            org_id=orgs[i % len(orgs)].pk,
            api_key_id=keys[i % len(orgs)][0].pk,
            model_name=MODELS[0],
            route_id=1,
            router_id=1,
            ttfb_ms=12,
            client_ip="127.0.0.1",
            prompt_tokens=120 if served else 0,
            completion_tokens=380 if served else 0,
            input_per_mtok=100_000,
            output_per_mtok=400_000,
        )
        t = time.perf_counter()
        request_record(record=record)
        return (time.perf_counter() - t) * 1000

    for i in range(200):  # warm up: connection, statement cache, pages
        call(-1 - i, True)
    # Interleaved, so both kinds of write see the same load, checkpoints and autovacuum.
    timings: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.records):
        for served in (True, False):
            timings[served].append(call(i, served))

    def stats(ms: list[float]) -> dict:
        ms = sorted(ms)
        return {
            "calls": len(ms),
            "mean_ms": round(statistics.fmean(ms), 3),
            "p50_ms": round(ms[len(ms) // 2], 3),
            "p95_ms": round(ms[int(len(ms) * 0.95)], 3),
            "p99_ms": round(ms[int(len(ms) * 0.99)], 3),
        }

    return {"log_and_usage_event": stats(timings[True]), "log_only": stats(timings[False])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--keys", type=int, default=3, help="keys per org")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="rollup processes side by side")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--records", type=int, default=2000, help="request_record calls to time")
    args = parser.parse_args()

    configure()
    orgs, keys = prepare(args)
    if args.events == 0:  # only the per-request write
        for name, s in time_request_record(args, orgs, keys).items():
            print(f"request_record ({name.replace('_', ' ')}): {s}", flush=True)
        return
    load_s = load_events(args, orgs, keys)
    print(f"loaded {args.events:,} usage events in {load_s:.1f} s (COPY)", flush=True)
    rollup = time_rollups(args)
    check = check_rollups()
    print(
        f"rollup: {rollup['events']:,} events in {rollup['seconds']:.2f} s = {rollup['events_per_s']:,.0f} events/s "
        f"({args.workers} worker(s), batch {args.batch_size}; {check['hour_buckets']:,} hour + "
        f"{check['day_buckets']:,} day buckets; rollups == events: {check['ok']})",
        flush=True,
    )
    ledger = time_ledger(args)
    print(
        f"ledger: {ledger['entries']:,} usage entries (one per org and hour) in {ledger['seconds']:.2f} s; "
        f"ledger == events: {ledger['ledger_equals_events']}",
        flush=True,
    )
    record = time_request_record(args, orgs, keys)
    for name, s in record.items():
        print(
            f"request_record ({name.replace('_', ' ')}): mean {s['mean_ms']} ms, p50 {s['p50_ms']} ms, "
            f"p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms over {s['calls']} calls",
            flush=True,
        )
    print(
        json.dumps(
            {"rollup": rollup, "check": check, "ledger": ledger, "request_record": record},
            default=str,
        )
    )
    if not (check["ok"] and ledger["ledger_equals_events"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
