-- Settle a finished request (release.lua's release_request), unless the reaper already
-- did: a request whose lease ran out (its process stalled past it) was settled and billed
-- by gateway/leases.py's reaper, and settling it again would count it twice.
--
-- ARGV: prefix, request_id, key_id, org_id, period_start, router_id ("" for none),
--       router_outcome ("ok", "fail" or ""), admitted_s, est_tokens, actual_tokens,
--       served (1/0), failure_threshold, now_ms, window_bucket_s,
--       unadmit (1: the admission itself is undone, its requests/min count included),
--       budget_start ("" for a key without a budget), budget_reserved, budget_actual (micro-USD)
-- Returns 1, or 0 when the reaper had settled it.

local rid = ARGV[2]
if redis.call('ZREM', k_live_index(), rid) == 0 then return 0 end
redis.call('DEL', k_live(rid))
release_request(rid, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
                tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]),
                tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[15] == '1',
                ARGV[16], tonumber(ARGV[17]), tonumber(ARGV[18]))
return 1
