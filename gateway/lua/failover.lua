-- A router failed before the first byte reached the client: count the failure
-- against its breaker, release its in-flight slot and pick another router.
--
-- ARGV: prefix, now_ms, request_id, failed_router_id, failure_threshold,
--       lease_ms, cooldown_ms, probe_ttl_ms, rand_a, rand_b, n_candidates,
--       then (router_id, weight, tier) per remaining candidate.
-- Returns the chosen router id, or 0 when none is eligible.

local now = tonumber(ARGV[2])
local rid = ARGV[3]
local failed = ARGV[4]
local threshold = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local cooldown = tonumber(ARGV[7])
local probe_ttl = tonumber(ARGV[8])
local rand = {tonumber(ARGV[9]), tonumber(ARGV[10])}
local ncand = tonumber(ARGV[11])

redis.call('ZREM', k_router_inflight(failed), rid)
breaker_failed(k_breaker(failed), threshold, now)

-- The request's live entry (gateway/leases.py) follows it to its new router.
local live = k_live(rid)
local tracked = redis.call('EXISTS', live) == 1
local c = choose_router(now, cooldown, 12, ncand, rand)
if c == nil then
  if tracked then redis.call('HSET', live, 'r', '') end
  return 0
end
take_router(c, now, rid, lease_ms, probe_ttl, false)
if tracked then redis.call('HSET', live, 'r', c.id) end
return tonumber(c.id)
