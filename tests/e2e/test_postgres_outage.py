"""Postgres unavailable while a live gateway serves requests (issue 14 item 1): every served
request is answered (200 and the whole stream, not a 500 after the pool's wait), its usage
goes to the spool, and the spool is written into Postgres exactly once when it returns;
usage events == rollups == ledger, and Redis's count == Postgres's.

The gateway reaches Postgres through a TCP proxy the test controls: `cut()` is Postgres
stopped (connections dropped, new ones refused), `stall()` a network partition (connections
stay open, nothing gets through)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from metering import spool
from metering.ledger import ledger_post_range
from metering.models import RequestLog, UsageEvent
from metering.quotas import quota_reconcile
from metering.rollups import usage_rollup_pending
from tests.factories import seeding
from tests.factories.metering import event_totals, ledger_usage_totals, rollup_totals
from tests.support.processes import (
    GatewayServer,
    Process,
    base_env,
    database_url,
    provider_env,
    server_command,
)
from tests.support.wire import chat, eventually, stream_payloads

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WRITE_TIMEOUT = 1.0  # USAGE_WRITE_TIMEOUT_SECONDS of the gateway
POOL_TIMEOUT = 4.0  # DB_POOL_TIMEOUT: the outage lasts longer than the pool's wait
OUTAGE = POOL_TIMEOUT + 2.0


class PostgresProxy:
    """127.0.0.1:<port> -> the test's Postgres, one pair of pump threads per connection."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.port = 0
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener is closed
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()  # stalled: held here, and sent when it flows again
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def url(self, database_url: str) -> str:
        host = f"{self.target[0]}:{self.target[1]}"
        assert host in database_url, database_url
        return database_url.replace(host, f"127.0.0.1:{self.port}")

    def cut(self) -> None:
        """Postgres stopped: every connection dropped, new ones refused."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stall(self) -> None:
        """A network partition: connections stay open, nothing gets through."""
        self.flowing.clear()

    def restore(self) -> None:
        self.flowing.set()
        if self.listener.fileno() == -1:
            self._listen()

    def close(self) -> None:
        self.flowing.set()
        self.cut()


@pytest.fixture
def proxy():
    db = django_settings.DATABASES["default"]
    proxy = PostgresProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    yield proxy
    proxy.close()


@pytest.fixture
def spool_dir(settings, tmp_path):
    """The gateway's spool directory, read here by `spool.replay()` and `spool.pending()`."""
    settings.USAGE_SPOOL_DIR = str(tmp_path / "spool")
    return tmp_path / "spool"


@pytest.fixture
def world(request, simulators, proxy, spool_dir, settings, fast_state, tmp_path):
    """A gateway (production's gevent server, pooled Postgres) whose Postgres is the proxy.

    Started here rather than with the `gateway` fixture, which points every server at the
    test database itself."""
    (router,) = simulators(1)
    args, ready = server_command()
    environment = base_env(
        DATABASE_URL=proxy.url(database_url()),
        REDIS_URL=settings.REDIS_URL,
        FAST_STATE_PREFIX=settings.FAST_STATE_PREFIX,
        SECRET_KEY=settings.SECRET_KEY,
        API_KEY_PEPPER=settings.API_KEY_PEPPER,
        ROUTER_KEY_ENCRYPTION_KEY=settings.ROUTER_KEY_ENCRYPTION_KEY,
        LOG_LEVEL="WARNING",
        DB_POOL_MAX_SIZE="4",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
        USAGE_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT),
        USAGE_WRITE_BACKOFF_SECONDS="1",
        USAGE_SPOOL_DIR=str(spool_dir),
        **provider_env(),
    )
    process = Process("gateway", args, environment, tmp_path / "gateway.log", ready)
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant("outage@example.com")
    yield GatewayServer(process), tenant
    process.stop()
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        print(f"--- gateway log (tail) ---\n{process.log()[-4000:]}")


class Client:
    """Requests to the gateway, and what each one's client was told it used."""

    def __init__(self, server, secret: str):
        self.server, self.secret = server, secret
        self.told: dict[str, tuple[int, int]] = {}  # request id -> (prompt, completion)

    def ask(self, *, stream: bool) -> tuple[float, str]:
        started = time.monotonic()
        if stream:
            response = chat(
                self.server, self.secret, stream=True, stream_options={"include_usage": True}
            )
        else:
            response = chat(self.server, self.secret)
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
        if stream:
            payloads = stream_payloads(response)
            assert payloads[-1] == "[DONE]"
            usage = next(p["usage"] for p in payloads[:-1] if p.get("usage"))
        else:
            usage = response.json()["usage"]
        assert usage["completion_tokens"] > 0
        self.told[request_id] = (usage["prompt_tokens"], usage["completion_tokens"])
        return took, request_id

    def burst(self, count: int) -> list[tuple[float, str, bool]]:
        """`count` requests at once, every other one streamed: (seconds, request id, stream)."""
        kinds = [i % 2 == 1 for i in range(count)]
        with ThreadPoolExecutor(max_workers=count) as pool:
            done = list(pool.map(lambda stream: self.ask(stream=stream), kinds))
        return [
            (took, request_id, stream)
            for (took, request_id), stream in zip(done, kinds, strict=True)
        ]


def serve_through_the_outage(client: Client) -> list[tuple[float, str, bool]]:
    """Bursts of requests until the outage has lasted OUTAGE seconds."""
    answered = []
    started = time.monotonic()
    while time.monotonic() - started < OUTAGE:
        answered += client.burst(6)
        time.sleep(0.2)
    return answered


def until_postgres_takes_writes(client: Client) -> None:
    """Requests until one is written straight into Postgres (the gateway's pool has
    reconnected): that write also lets go of the gateway's spool file."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, request_id = client.ask(stream=False)
        if eventually(
            lambda rid=request_id: RequestLog.objects.filter(request_id=rid).exists(),
            timeout=2 * WRITE_TIMEOUT,
        ):
            return
    pytest.fail("the gateway never wrote to Postgres again")


def drain_and_check(client: Client, org) -> None:
    """The spool drains (replays from here: any process on the host may do it), exactly once:
    every request the clients were answered is in Postgres once, billed as told."""
    replayed: list[int] = []

    def drained() -> bool:
        replayed.append(spool.replay())
        return spool.pending() == 0

    assert eventually(drained, timeout=30, interval=0.2), spool.pending()
    assert spool.replay() == 0  # once drained, a replay changes nothing
    ids = set(client.told)
    logs = RequestLog.objects.filter(request_id__in=ids)
    assert logs.count() == len(ids) == RequestLog.objects.count()
    events = {
        e.request_id: (e.prompt_tokens, e.completion_tokens)
        for e in UsageEvent.objects.filter(org_id=org.pk)
    }
    assert events == client.told
    assert UsageEvent.objects.count() == len(ids)

    now = timezone.now() + timedelta(hours=2)
    usage_rollup_pending(now=now)
    ledger_post_range(
        org_id=None, start=now - timedelta(days=1), end=now, now=now, lag=timedelta(0)
    )
    truth = event_totals(org)
    assert truth[0] == len(ids)
    assert rollup_totals(org) == truth
    assert ledger_usage_totals(org) == truth
    # Redis counted what Postgres holds: the allowance counters need no correction.
    assert quota_reconcile(now=timezone.now(), org_ids=[org.pk], dry_run=True).changed == 0


def test_postgres_stopped_longer_than_the_pool_wait_loses_no_usage(world, proxy, spool_dir):
    server, tenant = world
    client = Client(server, tenant.secret)
    client.burst(4)  # warm: key context and catalog cached, writes direct
    assert eventually(lambda: RequestLog.objects.count() == 4)

    proxy.cut()
    answered = serve_through_the_outage(client)
    outage_ids = {request_id for _, request_id, _ in answered}
    # Answers came after at most the write deadline (plus the router and this test's
    # threads on a busy machine), not after the pool's wait, and not as errors.
    assert max(took for took, _, _ in answered) < POOL_TIMEOUT
    assert not RequestLog.objects.filter(request_id__in=outage_ids).exists()
    assert eventually(lambda: spool.pending() == len(answered)), spool.pending()
    assert spool.replay() == 0  # the gateway is writing its file: no other process takes it

    proxy.restore()
    until_postgres_takes_writes(client)
    drain_and_check(client, tenant.org)


def test_postgres_that_stops_answering_costs_a_request_at_most_the_deadline(
    world, proxy, spool_dir
):
    """A partition: the pooled connections look fine and the statement is sent, but no answer
    comes. The write gives up at its deadline (the connection is dropped), later writes go
    straight to the spool; the statements cut off reach Postgres when the partition heals,
    and the replay of the same records changes nothing."""
    server, tenant = world
    client = Client(server, tenant.secret)
    client.burst(4)
    assert eventually(lambda: RequestLog.objects.count() == 4)

    proxy.stall()
    # Alone, so an idle pooled connection takes its statement (no wait for the pool):
    took, _ = client.ask(stream=False)
    assert took < POOL_TIMEOUT
    assert "no answer within the deadline" in server.process.log()
    answered = serve_through_the_outage(client)
    assert max(took for took, _, _ in answered) < POOL_TIMEOUT
    assert eventually(lambda: spool.pending() == len(answered) + 1), spool.pending()

    proxy.restore()
    until_postgres_takes_writes(client)
    drain_and_check(client, tenant.org)
