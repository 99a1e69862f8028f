-- Settle a finished request: release its concurrency and router slots, tell the
-- router's breaker how it went, and replace the worst-case token reservation with
-- the tokens actually served (a request that served nothing gives its allowance back).
--
-- ARGV: prefix, request_id, key_id, org_id, period_start, router_id ("" for none),
--       router_outcome ("ok", "fail" or ""), admitted_s, est_tokens, actual_tokens,
--       served (1/0), failure_threshold, now_ms, window_bucket_s,
--       unadmit (1: the admission itself is undone, its requests/min count included)

local rid = ARGV[2]
local key_id, org_id, period = ARGV[3], ARGV[4], ARGV[5]
local router, outcome = ARGV[6], ARGV[7]
local admitted_s = ARGV[8]
local est, actual = tonumber(ARGV[9]), tonumber(ARGV[10])
local served = tonumber(ARGV[11])
local threshold = tonumber(ARGV[12])
local now = tonumber(ARGV[13])
local wbucket = tonumber(ARGV[14])
local unadmit = ARGV[15] == '1'

redis.call('ZREM', k_key_concurrency(key_id), rid)
redis.call('ZREM', k_org_concurrency(org_id), rid)

if router ~= '' then
  local bk = k_breaker(router)
  redis.call('ZREM', k_router_inflight(router), rid)
  if outcome == 'ok' then
    redis.call('DEL', bk)  -- closed, no failures counted
  elseif outcome == 'fail' then
    breaker_failed(bk, threshold, now)
  end
end

if unadmit then
  window_adjust(k_key_requests(key_id), admitted_s, -1)
  window_adjust(k_org_requests(org_id), admitted_s, -1)
end

local delta = actual - est
if delta ~= 0 then
  window_adjust(k_key_tokens(key_id), admitted_s, delta)
  window_adjust(k_org_tokens(org_id), admitted_s, delta)
end
local qkey = k_quota(org_id, period)
if redis.call('EXISTS', qkey) == 1 then
  if delta ~= 0 then redis.call('HINCRBY', qkey, 't', delta) end
  if served == 0 then
    redis.call('HINCRBY', qkey, 'r', -1)
    window_adjust(k_org_window(org_id), fmt(math.floor(tonumber(admitted_s) / wbucket)), -1)
  end
end
return 1
