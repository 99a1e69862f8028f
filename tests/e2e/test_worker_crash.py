"""A web worker killed mid-load (kill -9) or stopped by a deploy (SIGTERM), on the
production server configuration (gunicorn -c portal/gunicorn.py, gevent workers):
every client that received content is billed once, the killed worker's concurrency and
router slots come back within a lease, and the allowance counter equals Postgres."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from gateway.tokens import tokens_for_chars
from infra import fastkeys
from metering.models import RequestLog, UsageEvent
from metering.quotas import current_period, quota_key
from tests.factories import seeding
from tests.support.processes import (
    Process,
    base_env,
    database_url,
    free_port,
    provider_env,
)
from tests.support.wire import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
STREAMS = 20
LEASE_SECONDS = "1.5"
TOKENS_PER_SECOND = 40  # the simulators' pace


@pytest.fixture
def production_server(settings, fast_state, tmp_path):
    """`start(**env) -> (url, master pid)`: gunicorn with portal/gunicorn.py, as deployed."""
    started: list[Process] = []

    def start(**env: str) -> tuple[str, Process]:
        port = free_port()
        environment = base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            FAST_STATE_PREFIX=settings.FAST_STATE_PREFIX,
            SECRET_KEY=settings.SECRET_KEY,
            API_KEY_PEPPER=settings.API_KEY_PEPPER,
            ROUTER_KEY_ENCRYPTION_KEY=settings.ROUTER_KEY_ENCRYPTION_KEY,
            LOG_LEVEL="WARNING",
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_ACCESS_LOG="",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            GATEWAY_LEASE_SECONDS=LEASE_SECONDS,
            DB_POOL_MAX_SIZE="4",
            **provider_env(),
            **env,
        )
        process = Process(
            f"gunicorn {len(started)}",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "portal/gunicorn.py",
                "portal.wsgi:application",
            ],
            environment,
            tmp_path / f"gunicorn-{len(started)}.log",
            r"Booting worker with pid",
        )
        started.append(process)
        process.wait_for_line()
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(url), timeout=30)
        return url, process

    yield start
    for process in started:
        process.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@dataclass
class Stream:
    request_id: str = ""
    chars: int = 0  # content characters received
    done: bool = False  # [DONE] received
    error: str = ""
    started: threading.Event = field(default_factory=threading.Event)


def run_stream(url: str, secret: str, stream: Stream) -> None:
    try:
        with requests.post(
            f"{url}/v1/chat/completions",
            json={
                "model": seeding.MODEL,
                "messages": [{"role": "user", "content": "Tell me a long story."}],
                "stream": True,
            },
            headers={"Authorization": f"Bearer {secret}"},
            stream=True,
            timeout=60,
        ) as response:
            stream.request_id = response.headers.get("x-request-id", "")
            for line in response.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    stream.done = True
                    break
                payload = json.loads(data)
                for choice in payload.get("choices", []):
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        stream.chars += len(text)
                        stream.started.set()
    except (requests.RequestException, ValueError) as err:
        stream.error = repr(err)
    finally:
        stream.started.set()


def start_streams(url: str, secret: str) -> tuple[list[Stream], list[threading.Thread]]:
    streams = [Stream() for _ in range(STREAMS)]
    threads = [
        threading.Thread(target=run_stream, args=(url, secret, stream), daemon=True)
        for stream in streams
    ]
    for thread in threads:
        thread.start()
    return streams, threads


def assert_billed_once_and_healed(fast_state, tenant, catalog, streams: list[Stream]) -> None:
    served = [s for s in streams if s.chars]
    assert served, "no stream received content before the fault"
    for stream in served:
        assert stream.request_id
    ids = [s.request_id for s in served]
    events = eventually(
        lambda: (
            list(UsageEvent.objects.filter(request_id__in=ids))
            if UsageEvent.objects.filter(request_id__in=ids).count() == len(ids)
            else None
        ),
        timeout=30,
    )
    by_id = {event.request_id: event for event in events}
    for stream in served:
        event = by_id[stream.request_id]
        # Billed once (one event per request id) for what the client received: a finished
        # stream exactly as counted, a cut one as of its process's last progress record
        # (renewed each second: at most a second of tokens behind), never much more than
        # the client got (what was in flight when the process died).
        received = tokens_for_chars(stream.chars)
        if stream.done:
            assert event.completion_tokens == received, (stream, event)
        else:
            assert received - TOKENS_PER_SECOND - 2 <= event.completion_tokens, (stream, event)
            assert event.completion_tokens <= received + 8, (stream, event)
        assert event.prompt_tokens > 0

    org, key = str(tenant.org.pk), str(tenant.key.pk)
    now_ms = int(time.time() * 1000)

    def slots_free() -> bool:
        sets = [fastkeys.KEY_CONCURRENCY(key_id=key), fastkeys.ORG_CONCURRENCY(org_id=org)]
        sets += [fastkeys.ROUTER_INFLIGHT(router_id=r.pk) for r in catalog.routers]
        live = sum(fast_state.zcount(name, f"({now_ms}", "+inf") for name in sets)
        return live == 0 and fast_state.zcard(fastkeys.LIVE_INDEX()) == 0

    assert eventually(slots_free, timeout=30)
    totals = UsageEvent.objects.filter(org_id=tenant.org.pk)
    requests_ = totals.count()
    tokens = sum(e.prompt_tokens + e.completion_tokens for e in totals)
    start, _ = current_period(subscription=tenant.org.subscriptions.get(), now=timezone.now())
    period_start_ms = int(start.timestamp() * 1000)
    counter = fast_state.hmget(quota_key(org_id=org, period_start_ms=period_start_ms), "r", "t")
    assert (int(counter[0]), int(counter[1])) == (requests_, tokens)


def test_a_killed_worker_leaves_every_served_stream_billed_once_and_its_slots_free(
    simulators, production_server, fast_state
):
    sims = simulators(2)
    for sim in sims:
        sim.configure(completion_tokens=300, tokens_per_second=TOKENS_PER_SECOND)
    catalog = seeding.catalog(router_urls=[sim.url for sim in sims])
    tenant = seeding.tenant()
    url, master = production_server(WEB_WORKERS="1")  # every stream on the worker killed
    eventually(lambda: len(workers_of(master.proc.pid)) == 1, timeout=30)

    streams, threads = start_streams(url, tenant.secret)
    for stream in streams:
        assert stream.started.wait(30)
    time.sleep(2.5)  # streams well under way: progress recorded, then the crash
    victim = workers_of(master.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    for thread in threads:
        thread.join(60)

    cut = [s for s in streams if not s.done]
    assert cut, "the kill cut no stream: nothing was tested"
    assert_billed_once_and_healed(fast_state, tenant, catalog, streams)
    lost = RequestLog.objects.filter(error_code="worker_lost")
    assert lost.count() == len([s for s in cut if s.chars])


def test_sigterm_lets_short_streams_finish_and_records_the_rest(
    simulators, production_server, fast_state
):
    long_sim, short_sim = simulators(2)
    long_sim.configure(completion_tokens=400, tokens_per_second=TOKENS_PER_SECOND)  # ~10 s
    short_sim.configure(completion_tokens=8, tokens_per_second=TOKENS_PER_SECOND)  # ~0.2 s
    catalog = seeding.catalog(router_urls=[long_sim.url, short_sim.url])
    tenant = seeding.tenant()
    url, master = production_server(WEB_WORKERS="1", WEB_GRACEFUL_TIMEOUT="4")

    streams, threads = start_streams(url, tenant.secret)
    for stream in streams:
        assert stream.started.wait(30)
    master.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert master.proc.wait(30) == 0

    finished = [s for s in streams if s.done]
    cut = [s for s in streams if not s.done]
    assert finished and cut, (len(finished), len(cut))
    assert_billed_once_and_healed(fast_state, tenant, catalog, streams)
    stopped = set(
        RequestLog.objects.filter(error_code="server_stopping").values_list("request_id", flat=True)
    )
    assert {s.request_id for s in cut if s.chars} <= stopped
