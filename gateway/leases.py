"""Requests in flight, kept alive by the process serving them; and the healing of those a
dead process leaves behind.

Admission (admit.lua) gives each request leases that run out GATEWAY_LEASE_SECONDS later:
its key and org concurrency slots, its router's in-flight slot, and an entry in the live
index whose hash holds what settling it needs. The process that serves the request holds
it here and renews its leases every second (gateway/upkeep.py), so a killed worker's
slots are free again within a lease, not after minutes.

A stream records its bill in its live entry before its first content goes out
(`serving`), and each renewal records the completion tokens it has sent since. When a
lease runs out unrenewed, the reaper (`reap`, run by every web process's upkeep loop and
by a Celery task) settles the request once in fast state (reap.lua: the allowance is
corrected at once, no reconcile needed) and writes its request log and usage event:
billed for its prompt plus the completion tokens the Portal counted as sent as of the
last renewal (at most about a second of text goes unbilled; the router's own count never
arrived). A request that had sent no content gives its reservation back and leaves
no record: the client got nothing.

A process that stalls longer than a lease (it is alive but did not renew) finds its
request reaped when it settles: settle.lua then changes nothing, and its own record write
is a no-op against the reaper's (the same request id), so nothing is counted twice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from gateway import limits
from gateway.tokens import tokens_for_chars
from metering.services import RequestRecord, request_record

logger = logging.getLogger(__name__)

_live: dict[str, object] = {}  # request id -> gateway.calls.Call
_BATCH = 500  # requests per renew or reap script call
RECLAIM_MS = 60_000  # a claimed request not acknowledged this long after is handed out again
LOST = "worker_lost"  # the error code of a request its process never finished


def hold(call) -> None:
    """The request is admitted: renew its leases until `drop`."""
    _live[call.request_id] = call


def drop(call) -> None:
    _live.pop(call.request_id, None)


def live_calls() -> list:
    return list(_live.values())


def serving(call) -> None:
    """A stream's first content is about to go out: leave its bill in fast state."""
    ctx, entry, target = call.ctx, call.entry, call.trail.target
    bill = {
        "endpoint": call.endpoint,
        "model": entry.name if entry else call.model[:100],
        "org": ctx.org_id,
        "key": ctx.key_id,
        "route": target.route.id if target else None,
        "router": target.router.id if target else None,
        "at": int(call.now.timestamp() * 1000),
        "ip": call.client_ip,
        "ttfb": call.ttfb_ms,
        "in": entry.input_price_per_mtok if entry else 0,
        "out": entry.output_price_per_mtok if entry else 0,
    }
    try:
        limits.serving(
            request_id=call.request_id,
            bill=json.dumps(bill, separators=(",", ":")),
            prompt_tokens=call.prompt_tokens,
        )
    except Exception:
        # The stream goes on: only a crash of this process before it ends would go unbilled.
        logger.exception("could not record a stream's bill", extra={"request_id": call.request_id})


def renew(*, now_ms: int) -> int:
    """Renew the leases of every request this process holds; the number renewed."""
    leases = []
    for call in live_calls():
        adm = call.adm
        if adm is None or call.finished:
            continue
        target = call.trail.target
        sent = (
            min(tokens_for_chars(call.sent_chars), call.max_tokens or 2**62) if call.serving else -1
        )
        leases.append(
            (
                call.request_id,
                adm.ctx.key_id,
                adm.ctx.org_id,
                target.router.id if target else "",
                sent,
            )
        )
    renewed = 0
    for start in range(0, len(leases), _BATCH):
        renewed += limits.renew(now_ms=now_ms, leases=leases[start : start + _BATCH])
    return renewed


def reap(*, now_ms: int) -> int:
    """Settle and record the requests dead processes left; the number handled."""
    handled = 0
    while True:
        claimed = limits.reap(now_ms=now_ms, limit=_BATCH, reclaim_ms=RECLAIM_MS)
        done = []
        for request_id, fields in claimed:
            try:
                request_record(record=_record(request_id, fields, now_ms))
            except Exception:
                logger.exception(
                    "could not record a reaped request", extra={"request_id": request_id}
                )
                continue
            done.append(request_id)
        limits.reaped_done(done)
        handled += len(claimed)
        if len(claimed) < _BATCH or len(done) < len(claimed):
            return handled


def _record(request_id: str, fields: dict[str, str], now_ms: int) -> RequestRecord:
    bill = json.loads(fields["bill"])
    prompt = int(fields.get("pt") or 0)
    tokens = int(fields.get("tokens") or prompt)
    return RequestRecord(
        request_id=request_id,
        endpoint=bill["endpoint"],
        status_code=200,  # the stream had begun: the client got a 200 and some content
        latency_ms=max(now_ms - bill["at"], 0),
        created_at=datetime.fromtimestamp(bill["at"] / 1000, tz=UTC),
        org_id=bill["org"],
        api_key_id=bill["key"],
        model_name=bill["model"],
        route_id=bill["route"],
        router_id=bill["router"],
        error_code=LOST,
        ttfb_ms=bill["ttfb"],
        streamed=True,
        client_ip=bill["ip"],
        prompt_tokens=prompt,
        completion_tokens=max(tokens - prompt, 0),
        estimated=True,
        input_per_mtok=bill["in"],
        output_per_mtok=bill["out"],
    )
