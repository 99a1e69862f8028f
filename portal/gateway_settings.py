"""The gateway's settings (leases, junk and degraded modes, enforcement, routers and their
breakers, request bodies), read from the environment like every other setting. Imported
by portal/settings.py, which merges GATEWAY_BEAT_SCHEDULE into CELERY_BEAT_SCHEDULE.
"""

from django.core.exceptions import ImproperlyConfigured

from portal.environment import _GEVENT, DEBUG, _every, env

GATEWAY_BEAT_SCHEDULE: dict = {}

# An admitted request's concurrency and router slots are leases its process renews every
# third of this; a process that dies frees them within it, and the reaper bills what its
# streams had sent (gateway/leases.py).
GATEWAY_LEASE_SECONDS = env.float("GATEWAY_LEASE_SECONDS", default=15.0)
# Renew leases, reap dead processes' requests and replay the usage spool from a background
# loop in each web process (off in the test suite's in-process tests).
GATEWAY_UPKEEP = env.bool("GATEWAY_UPKEEP", default=True)
# Failed authentications (unknown or malformed keys) one client address may make per
# minute; past it, its requests get 429 before any key lookup (gateway/junk.py; 0: no limit).
GATEWAY_AUTH_FAILURES_PER_MINUTE = env.int("GATEWAY_AUTH_FAILURES_PER_MINUTE", default=60)
# Proxies in front of the Portal that append the client's address to X-Forwarded-For (a
# load balancer: 1). 0: the socket's address is the client's (request logs, the limit above).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# With Redis unreachable: `refuse` (503 fast_state_unavailable, every limit stays exact) or
# `serve_recent_keys` (keys this process admitted within FAST_STATE_DEGRADED_KEY_SECONDS are
# served with per-process limits and no allowance reservation; gateway/degraded.py).
FAST_STATE_DEGRADED = env.str("FAST_STATE_DEGRADED", default="refuse")
if FAST_STATE_DEGRADED not in ("refuse", "serve_recent_keys"):
    raise ImproperlyConfigured("FAST_STATE_DEGRADED must be refuse or serve_recent_keys")
FAST_STATE_DEGRADED_KEY_SECONDS = env.float("FAST_STATE_DEGRADED_KEY_SECONDS", default=300.0)
# Requests dead web processes left (their leases ran out) are settled and billed by every
# web process's loop, and by this task when no web process is left to do it.
GATEWAY_BEAT_SCHEDULE["gateway.reap_requests"] = _every(
    max(1, round(GATEWAY_LEASE_SECONDS)), "gateway.reap_requests"
)
GATEWAY_MAX_TRIES = env.int("GATEWAY_MAX_TRIES", default=3)
# An answer that breaks the request's tool choice, a strict tool schema or its JSON output
# format is sent back to the model this many times with what was wrong, then refused.
GATEWAY_OUTPUT_RETRIES = env.int("GATEWAY_OUTPUT_RETRIES", default=1)
GATEWAY_ENFORCEMENT = env.bool("GATEWAY_ENFORCEMENT", default=True)
# GATEWAY_ENFORCEMENT=false turns off key checks, limits and billing: with DEBUG off the
# process refuses to start with it unless this is set too, which only the benchmark does
# (bench/stack.py, for bench/run.py's enforcement-off baseline). Never in production.
GATEWAY_ENFORCEMENT_OFF_ALLOWED = env.bool("GATEWAY_ENFORCEMENT_OFF_ALLOWED", default=False)
if not GATEWAY_ENFORCEMENT and not (DEBUG or GATEWAY_ENFORCEMENT_OFF_ALLOWED):
    raise ImproperlyConfigured(
        "GATEWAY_ENFORCEMENT=false serves /v1 without key checks, limits or billing: "
        "refused with DEBUG off (GATEWAY_ENFORCEMENT_OFF_ALLOWED=true is for the benchmark only)."
    )
AUTH_CONTEXT_TTL_SECONDS = env.int("AUTH_CONTEXT_TTL_SECONDS", default=300)
BREAKER_FAILURE_THRESHOLD = env.int("BREAKER_FAILURE_THRESHOLD", default=5)
BREAKER_COOLDOWN_MS = env.int("BREAKER_COOLDOWN_MS", default=30_000)
BREAKER_PROBE_TTL_MS = env.int("BREAKER_PROBE_TTL_MS", default=10_000)
ROUTER_CONNECT_TIMEOUT = env.float("ROUTER_CONNECT_TIMEOUT", default=2.0)
ROUTER_READ_TIMEOUT = env.float("ROUTER_READ_TIMEOUT", default=120.0)
ROUTER_FIRST_BYTE_TIMEOUT = env.float("ROUTER_FIRST_BYTE_TIMEOUT", default=30.0)
# A whole (non-stream) answer's first byte comes when the router has generated it all, so
# its deadline is longer than a stream's; past it the request fails over (pools/client.py).
ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT = env.float("ROUTER_NONSTREAM_FIRST_BYTE_TIMEOUT", default=60.0)
ROUTER_PROBE_TIMEOUT = env.float("ROUTER_PROBE_TIMEOUT", default=2.0)
# Probes also time a one-token completion: a router slower than this is marked slow and
# picked only when no other router is eligible (pools/health.py); 0 turns it off.
ROUTER_SLOW_SECONDS = env.float("ROUTER_SLOW_SECONDS", default=10.0)
# Routers whose breaker is open or that are marked slow are probed this often, so one
# that is back takes requests at once, not after BREAKER_COOLDOWN_MS; 0 turns it off.
ROUTER_RECOVERY_PROBE_SECONDS = env.int("ROUTER_RECOVERY_PROBE_SECONDS", default=5)
if ROUTER_RECOVERY_PROBE_SECONDS > 0:
    GATEWAY_BEAT_SCHEDULE["pools.probe_recovering_routers"] = _every(
        ROUTER_RECOVERY_PROBE_SECONDS, "pools.probe_recovering_routers"
    )
# Connections per router and process, idle or in use (pools/routerhttp.py): a call beyond
# them waits for one. Under gevent one process holds up to WEB_WORKER_CONNECTIONS (2,000)
# requests at once, so the default is above that.
ROUTER_POOL_MAXSIZE = env.int("ROUTER_POOL_MAXSIZE", default=4096 if _GEVENT else 256)
ROUTER_POOL_HOSTS = env.int("ROUTER_POOL_HOSTS", default=64)
ROUTER_TRUST_ENV = env.bool("ROUTER_TRUST_ENV", default=False)
CATALOG_MAX_AGE_SECONDS = env.float("CATALOG_MAX_AGE_SECONDS", default=60.0)


# --- Request bodies -----------------------------------------------------------------
# A body must arrive within this many seconds plus its length at the minimum rate, or the
# request ends with 408 request_timeout and its connection is closed (gevent workers).
BODY_READ_TIMEOUT_SECONDS = env.float("BODY_READ_TIMEOUT_SECONDS", default=10.0)
BODY_MIN_BYTES_PER_SECOND = env.float("BODY_MIN_BYTES_PER_SECOND", default=65536.0)
