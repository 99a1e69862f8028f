-- Renew the leases of the requests one process still serves (gateway/leases.py), and
-- record how much each stream has sent so far (completion tokens, the Portal's count).
--
-- ARGV: prefix, now_ms, lease_ms, n, then (request_id, key_id, org_id, router_id or "",
--       sent_tokens or -1) per request.
-- Returns the number renewed; a request missing from the live index was reaped (its
-- process stalled past its lease) and is left alone.

local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local lease = fmt(now + ttl)
local idx = k_live_index()
local renewed = 0
for i = 0, n - 1 do
  local at = 5 + i * 5
  local rid = ARGV[at]
  if redis.call('ZSCORE', idx, rid) then
    redis.call('ZADD', idx, lease, rid)
    renew_lease(rid, ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], lease, ttl)
    if tonumber(ARGV[at + 4]) >= 0 then redis.call('HSET', k_live(rid), 'ct', ARGV[at + 4]) end
    renewed = renewed + 1
  end
end
return renewed
