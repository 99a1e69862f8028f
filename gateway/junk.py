"""Requests with keys that do not exist cost the Portal next to nothing.

Each failed authentication (a key that is malformed, unknown, revoked or otherwise
refused before admission) is counted per client address in fast state, one fixed
minute at a time. Past GATEWAY_AUTH_FAILURES_PER_MINUTE from one address, the process
that sees the count go over remembers the address until the minute ends and answers
its requests with 429 at once, before any key lookup (no Redis, no Postgres, no Unkey
call): so a second process lets at most one more failure through before it learns the
same. Successful requests pay nothing: the count is touched only when a key fails.

Requests refused for their key (invalid_api_key: none, malformed, unknown) are not
written to `request_logs`: they are counted in metrics, and sampled into the logs. Known
keys refused for their state (revoked, disabled, expired, over a limit) still get a row.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

from gateway import replies
from infra import fastkeys, faststate
from portal.errors import PortalError

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_blocked: dict[str, float] = {}  # client address -> when its block ends (time.time())
_refused = 0  # unauthenticated refusals this process has seen (for log sampling)
_LOG_FIRST, _LOG_EVERY = 10, 100
# Refusals that mean "this is not a key we serve", as opposed to a known key refused.
FAILED_AUTH = frozenset({"invalid_api_key"})


class AddressOverLimit(PortalError):
    """429: the address made too many failed authentications this minute."""

    def __init__(self, left_ms: int):
        super().__init__(
            "rate_limit_exceeded",
            "Too many requests with invalid API keys from this address; try again later.",
            headers=replies.retry_headers(left_ms),
        )


def unlogged(err: PortalError) -> bool:
    """Whether a refusal is junk: counted and sampled, never a request-log row."""
    return isinstance(err, AddressOverLimit) or err.code in FAILED_AUTH


def check(client_ip: str | None) -> None:
    """Refuse at once a client address over its failed-authentication budget."""
    if not client_ip or not _blocked:
        return
    until = _blocked.get(client_ip)
    if until is None:
        return
    left = until - time.time()
    if left <= 0:
        with _lock:
            _blocked.pop(client_ip, None)
        return
    raise AddressOverLimit(int(left * 1000))


def failed(client_ip: str | None) -> None:
    """Count one failed authentication from `client_ip` (best effort: never raises)."""
    if not client_ip:
        return
    limit = settings.GATEWAY_AUTH_FAILURES_PER_MINUTE
    if limit <= 0:
        return
    minute = int(time.time() // 60)
    try:
        pipe = faststate.get_client().pipeline(transaction=False)
        name = fastkeys.AUTH_FAILURES(client_ip=client_ip, minute=minute)
        pipe.incr(name)
        pipe.expire(name, 120)
        count = pipe.execute()[0]
    except redis.RedisError:
        return
    if count > limit:
        with _lock:
            _blocked[client_ip] = (minute + 1) * 60
            if len(_blocked) > 100_000:  # a flood of addresses: keep the newest
                for ip in list(_blocked)[:50_000]:
                    _blocked.pop(ip, None)


def sample(*, request_id: str, code: str, client_ip: str | None, endpoint: str) -> None:
    """Log the first refusals of unauthenticated requests, then one in a hundred."""
    global _refused
    _refused += 1
    if _refused <= _LOG_FIRST or _refused % _LOG_EVERY == 0:
        logger.info(
            "refused an unauthenticated request (%d so far in this process)",
            _refused,
            extra={
                "request_id": request_id,
                "code": code,
                "client_ip": client_ip,
                "endpoint": endpoint,
            },
        )
