-- Shared by admit.lua and failover.lua (prepended when the scripts are loaded).
--
-- choose_router: among the candidates ARGV[first..] as (router_id, weight, tier)
-- triples, the lowest tier with an eligible router (breaker closed, or open past its
-- cool-down with no probe under way); within it, two weighted draws and the one with
-- fewer in-flight requests per unit of weight wins. nil when none is eligible.
-- A router the health probe marked slow (k_router_slow, pools/health.py) ranks after
-- every router that is not, whatever its tier: it is used only when no other is eligible.
local SLOW_TIER = 1000000
local function choose_router(now, cooldown, first, ncand, rand)
  local tiers = {}
  -- Slowness only orders candidates against each other: one candidate needs no look.
  local slow = {}
  if ncand > 1 then
    local slow_keys = {}
    for i = 0, ncand - 1 do slow_keys[i + 1] = k_router_slow(ARGV[first + i * 3]) end
    slow = redis.call('MGET', unpack(slow_keys))
  end
  for i = 0, ncand - 1 do
    local id = ARGV[first + i * 3]
    local weight = tonumber(ARGV[first + 1 + i * 3])
    local tier = tonumber(ARGV[first + 2 + i * 3])
    if slow[i + 1] then tier = tier + SLOW_TIER end
    local b = redis.call('HMGET', k_breaker(id), 'state', 'opened', 'probe')
    local ok, probe = true, false
    if b[1] == 'open' then
      ok = now >= tonumber(b[2]) + cooldown and (not b[3] or now >= tonumber(b[3]))
      probe = ok
    end
    if ok then
      tiers[tier] = tiers[tier] or {}
      table.insert(tiers[tier], {id = id, w = weight, probe = probe})
    end
  end
  local best = nil
  for t, _ in pairs(tiers) do if best == nil or t < best then best = t end end
  if best == nil then return nil end
  local list = tiers[best]
  local sum = 0
  for _, c in ipairs(list) do sum = sum + c.w end
  local function draw(u)
    local x = u * sum
    for _, c in ipairs(list) do
      x = x - c.w
      if x <= 0 then return c end
    end
    return list[#list]
  end
  local a, b = draw(rand[1]), draw(rand[2])
  if a == b then return a end  -- one router drawn twice: its load decides nothing
  -- Live in-flight requests per unit of weight: entries whose lease has not run out
  -- (take_router sweeps the rest); counted only for the two routers drawn.
  local live_from = '(' .. fmt(now)
  local function load(c)
    return redis.call('ZCOUNT', k_router_inflight(c.id), live_from, '+inf') / math.max(c.w, 1)
  end
  if load(b) < load(a) then return b end
  return a
end

-- take_router: hold an in-flight slot on the chosen router (and its probe lease).
-- `sweep`: also drop leases that ran out (left by a process that died mid-request);
-- counts ignore them anyway, so an occasional sweep keeps the set small.
local function take_router(c, now, rid, inflight_ttl, probe_ttl, sweep)
  local rk = k_router_inflight(c.id)
  if c.probe then redis.call('HSET', k_breaker(c.id), 'probe', fmt(now + probe_ttl)) end
  if sweep then redis.call('ZREMRANGEBYSCORE', rk, '-inf', fmt(now)) end
  redis.call('ZADD', rk, fmt(now + inflight_ttl), rid)
  redis.call('PEXPIRE', rk, inflight_ttl)
end


-- A breaker is a hash only while its router has failed lately (fields fails, state,
-- opened, probe); a success deletes it, so the common case reads an absent key.
local function breaker_failed(bk, threshold, now)
  local fails = redis.call('HINCRBY', bk, 'fails', 1)
  if fails >= threshold or redis.call('HGET', bk, 'state') == 'open' then
    redis.call('HSET', bk, 'state', 'open', 'opened', fmt(now))
    redis.call('HDEL', bk, 'probe')
  end
end
