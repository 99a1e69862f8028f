-- Shared by settle.lua and reap.lua (prepended when the scripts are loaded).
--
-- release_request: end one admitted request in fast state: free its concurrency and
-- router slots, tell the router's breaker how it went, and replace the worst-case token
-- reservation with the tokens served (a request that served nothing gives its allowance
-- back). `unadmit` also takes back its requests/min count (it never ran). A key with a
-- budget (`bstart` its budget period's start, "" for none) has its reserved cost
-- `breserved` replaced by the cost billed, `bactual` (micro-USD).
local function release_request(rid, key_id, org_id, period, router, outcome, admitted_s,
                               est, actual, served, threshold, now, wbucket, unadmit,
                               bstart, breserved, bactual)
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

  if bstart and bstart ~= '' then
    local bkey = k_key_budget(key_id, bstart)
    local bdelta = (bactual or 0) - (breserved or 0)
    if bdelta ~= 0 and redis.call('EXISTS', bkey) == 1 then redis.call('INCRBY', bkey, fmt(bdelta)) end
  end
end

-- renew_lease: (re)set a request's leases to run out at `lease` (ms): its concurrency slots,
-- its router slot and its entry in the live index. XX: only leases that still exist.
local function renew_lease(rid, key_id, org_id, router, lease, ttl)
  local sets = {k_key_concurrency(key_id), k_org_concurrency(org_id)}
  if router ~= '' then sets[3] = k_router_inflight(router) end
  for _, set in ipairs(sets) do
    redis.call('ZADD', set, 'XX', lease, rid)
    redis.call('PEXPIRE', set, ttl)  -- no other lease in it runs longer
  end
end
