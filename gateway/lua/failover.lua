-- A router failed before the first byte reached the client: count the failure
-- against its breaker, release its in-flight slot and pick another router.
--
-- ARGV: prefix, now_ms, request_id, failed_router_id, failure_threshold,
--       inflight_ttl_ms, cooldown_ms, probe_ttl_ms, rand_a, rand_b, n_candidates,
--       then (router_id, weight, tier) per remaining candidate.
-- Returns the chosen router id, or 0 when none is eligible.

local P = ARGV[1]
local now = tonumber(ARGV[2])
local rid = ARGV[3]
local failed = ARGV[4]
local threshold = tonumber(ARGV[5])
local inflight_ttl = tonumber(ARGV[6])
local cooldown = tonumber(ARGV[7])
local probe_ttl = tonumber(ARGV[8])
local rand = {tonumber(ARGV[9]), tonumber(ARGV[10])}
local ncand = tonumber(ARGV[11])

local bk = P .. 'brk:' .. failed
redis.call('ZREM', P .. 'rif:' .. failed, rid)
local fails = redis.call('HINCRBY', bk, 'fails', 1)
local state = redis.call('HGET', bk, 'state')
if fails >= threshold or state == 'open' then
  redis.call('HSET', bk, 'state', 'open', 'opened', now)
  redis.call('HDEL', bk, 'probe')
end

local tiers = {}
for i = 0, ncand - 1 do
  local id = ARGV[12 + i * 3]
  local weight = tonumber(ARGV[13 + i * 3])
  local tier = tonumber(ARGV[14 + i * 3])
  local b = redis.call('HMGET', P .. 'brk:' .. id, 'state', 'opened', 'probe')
  local ok, probe = true, false
  if b[1] == 'open' then
    ok = now >= tonumber(b[2]) + cooldown and (not b[3] or now >= tonumber(b[3]))
    probe = ok
  end
  if ok then
    local rk = P .. 'rif:' .. id
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', now)
    tiers[tier] = tiers[tier] or {}
    table.insert(tiers[tier], {id = id, w = weight, load = redis.call('ZCARD', rk) / math.max(weight, 1), probe = probe})
  end
end
local best = nil
for t, _ in pairs(tiers) do if best == nil or t < best then best = t end end
if best == nil then return 0 end
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
local c = a
if b.load < a.load then c = b end
if c.probe then redis.call('HSET', P .. 'brk:' .. c.id, 'probe', now + probe_ttl) end
redis.call('ZADD', P .. 'rif:' .. c.id, now + inflight_ttl, rid)
redis.call('PEXPIRE', P .. 'rif:' .. c.id, inflight_ttl)
return tonumber(c.id)
