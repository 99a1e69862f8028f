"""Each web process's background loop: renew its requests' leases, reap what dead
processes left (gateway/leases.py), replay the usage spool, and end its requests in time
when the process is stopped.

One thread (a greenlet under gevent) per process, started with the worker (gunicorn's
post_worker_init, through infra.lifecycle) or by the first admitted request (any other
server); GATEWAY_UPKEEP=false keeps it off (the test suite's in-process tests drive the
steps themselves).

Stopping (a deploy sends SIGTERM): gunicorn stops accepting and lets requests finish for
graceful_timeout, then its master kills the worker. Shortly before that deadline this
loop ends every request still running (gateway.calls.abandon): settled and recorded,
billed for what its client was sent. A stream cut by the deploy leaves its record; one
that finished in time is not touched.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from gateway import calls, degraded, leases
from infra import lifecycle
from infra.pgpool.base import release_pooled

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_started = False
STOPPED = "server_stopping"  # the error code of a request ended by its process stopping


def ensure_started() -> None:
    global _started
    if _started or not settings.GATEWAY_UPKEEP:
        return
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_loop, name="gateway-upkeep", daemon=True).start()


def period() -> float:
    """A round each second (or each third of a shorter lease): a stream's progress is
    recorded with each renewal, so a crash leaves at most a second of text unbilled."""
    return max(min(settings.GATEWAY_LEASE_SECONDS / 3, 1.0), 0.1)


def run_once(*, now_ms: int | None = None) -> None:
    """One round: renew this process's leases, reap dead ones', replay the spool."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        leases.renew(now_ms=now_ms)
        leases.reap(now_ms=now_ms)
        degraded.reconcile_served_orgs(_reconcile)
        _replay_spool()
    finally:
        release_pooled()  # the next round's writes take a pooled connection, with its deadline


def _reconcile(org_ids: list[str]) -> None:
    from django.utils import timezone

    from metering.services import quota_reconcile

    quota_reconcile(now=timezone.now(), org_ids=org_ids)


def _replay_spool() -> None:
    from metering import spool

    spool.replay()


def abandon_all(code: str = STOPPED) -> int:
    """End every request this process still holds; the number ended."""
    ended = 0
    for call in leases.live_calls():
        try:
            calls.abandon(call, code)
            ended += 1
        except Exception:
            logger.exception("could not end a request", extra={"request_id": call.request_id})
    return ended


def _loop() -> None:
    next_round = 0.0
    abandoned = False
    while True:
        now = time.monotonic()
        deadline = lifecycle.stop_deadline()
        if deadline is not None and not abandoned and now >= deadline:
            abandoned = True
            ended = abandon_all()
            if ended:
                logger.warning("stopping: ended %d requests still running", ended)
        if now >= next_round:
            next_round = now + period()
            try:
                run_once()
            except Exception:
                logger.exception("gateway upkeep failed; next round in %.1f s", period())
        time.sleep(min(period(), 0.5))


def register() -> None:
    """Run with the web worker (GatewayConfig.ready)."""
    lifecycle.on_worker_start(ensure_started)
    lifecycle.on_worker_exit(abandon_all)
