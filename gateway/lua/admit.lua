-- Admission for one gateway request, in one round trip: global pause, the key's
-- cached auth context, key/org status, entitlement, rate limits (requests/min and
-- tokens/min as 1-second-bucket sliding windows, concurrency) per key and per org,
-- the plan's short window, the weekly allowance reservation, and a router pick.
-- Nothing is written unless every check passes.
--
-- ARGV: prefix, key_hash, now_ms, request_id, model (canonical, "" if unknown, "*" a listing, "?" a key check),
--       est_tokens, lease_ms, breaker_cooldown_ms, probe_ttl_ms,
--       rand_a, rand_b, rand_c (three uniform draws in [0,1)), refuse (a refusal the
--       caller already decided, e.g. "context_length", answered once the key may use the
--       model; "" for none), client address (32 hex digits, apikeys/networks.py; "" unknown),
--       est_cost (the request's worst-case cost in micro-USD, for a key's budget; -1 not
--       priced: a key with a budget is answered "cost_miss" and the caller asks again),
--       n_candidates, then (router_id, weight, tier) per candidate.
-- Returns {status, ctx_json, catalog_version, pause_message, rpm_limit, rpm_left,
--          rpm_reset_ms, tpm_limit, tpm_left, tpm_reset_ms, retry_after_ms, router_id, scope}
-- where the limits are the binding ones (key or org, whichever has less left) and scope
-- says whose limit refused the request ("key" or "org"; "" for other answers).
--
-- A key's own limits (ctx.kl: requests/min, tokens/min, concurrency; the org's when it
-- sets none) count the key; the org's (ctx.p) count the org. A key's budget (ctx.b) is a
-- micro-USD counter per budget period, reserved with the worst case and settled like the
-- allowance (release.lua).

local key_hash = ARGV[2]
local now = tonumber(ARGV[3])
local rid = ARGV[4]
local model = ARGV[5]
local est = tonumber(ARGV[6])
local lease_ms = tonumber(ARGV[7])
local cooldown = tonumber(ARGV[8])
local probe_ttl = tonumber(ARGV[9])
local rand = {tonumber(ARGV[10]), tonumber(ARGV[11])}
local sweep = tonumber(ARGV[12]) < 0.02  -- a third draw: sweep expired leases about 1 in 50 times
local refuse = ARGV[13]
local client = ARGV[14]
local est_cost = tonumber(ARGV[15])
local ncand = tonumber(ARGV[16])
local FIRST_CANDIDATE = 17

local head = redis.call('MGET', k_catalog_version(), k_pause(), k_authctx(key_hash))
local version = head[1] or ''

local function answer(status, ctx, pause, rl, retry, router, scope)
  rl = rl or {0, 0, 0, 0, 0, 0}
  return {status, ctx or '', version, pause or '', rl[1], rl[2], rl[3], rl[4], rl[5], rl[6],
          retry or 0, router or 0, scope or ''}
end

-- Whether the client address (32 hex digits) is in a network {hex digits, prefix length}.
local function in_network(addr, net)
  local prefix = net[2]
  local whole = math.floor(prefix / 4)
  if string.sub(addr, 1, whole) ~= string.sub(net[1], 1, whole) then return false end
  local bits = prefix % 4
  if bits == 0 then return true end
  local div = 2 ^ (4 - bits)
  local a = tonumber(string.sub(addr, whole + 1, whole + 1), 16)
  local n = tonumber(string.sub(net[1], whole + 1, whole + 1), 16)
  return math.floor(a / div) == math.floor(n / div)
end

local function ip_allowed(nets)
  if client == '' then return false end
  for _, net in ipairs(nets) do
    if in_network(client, net) then return true end
  end
  return false
end

-- model '*': a model listing (GET /v1/models): the key checks and one request against
-- requests/min, nothing else; '?': the key checks alone (count_tokens). A pause stops
-- inference, not these.
local listing = model == '*' or model == '?'
if head[2] and not listing then return answer('paused', nil, head[2]) end

local raw = head[3]
if not raw then return answer('miss') end
if raw == 'none' then return answer('invalid') end
local ctx = cjson.decode(raw)

-- A context is stale when its key, org or plan changed, or its period ended.
local gens = redis.call('MGET', k_keygen(ctx.k), k_orggen(ctx.o), k_plangen(ctx.p.id))
if (gens[1] or '') ~= ctx.kg or (gens[2] or '') ~= ctx.og or (gens[3] or '') ~= ctx.pg or now >= ctx.pe then
  return answer('miss')
end
local budget = ctx.b
if budget == cjson.null then budget = nil end
if budget and now >= budget.e then return answer('miss') end  -- its budget period ended

if ctx.ks == 'revoked' then return answer('revoked', raw) end
if ctx.ks == 'disabled' then return answer('disabled', raw) end
if ctx.kx > 0 and now >= ctx.kx then return answer('expired', raw) end
if ctx.os == 'paused' then return answer('org_paused', raw) end
if ctx.os ~= 'active' then return answer('org_disabled', raw) end
if ctx.ipw ~= nil and ctx.ipw ~= cjson.null and not ip_allowed(ctx.ipw) then
  return answer('ip_not_allowed', raw)
end
local kl = ctx.kl
if kl == nil or kl == cjson.null then kl = {ctx.p.rpm, ctx.p.tpm, ctx.p.cc} end  -- the org's

-- The binding one of two sliding-window limits, the key's and its org's: the one with less
-- left after `extra` more (the org's on a tie: waiting on the org helps no other key).
local function binding(klimit, kw, olimit, ow, extra)
  local kleft = klimit - kw.total - extra
  local oleft = olimit - ow.total - extra
  if oleft <= kleft then return {limit = olimit, left = oleft, reset = ow.reset, scope = 'org'} end
  return {limit = klimit, left = kleft, reset = kw.reset, scope = 'key'}
end
-- listing:begin (tests/gateway/test_refusals.py reads the request's refusals without it)
if model == '?' then return answer('listed', raw) end
if listing then
  local kr = window_read(k_key_requests(ctx.k), now, 60, 1)
  local orr = window_read(k_org_requests(ctx.o), now, 60, 1)
  local req = binding(kl[1], kr, ctx.p.rpm, orr, 0)
  local tpm = math.min(kl[2], ctx.p.tpm)
  if req.left < 1 then
    return answer('rate_requests', raw, nil, {req.limit, 0, req.reset, tpm, tpm, 0},
                  math.max(req.reset, 1000), nil, req.scope)
  end
  local reset = req.reset
  if reset <= 0 then reset = 60000 - (now % 1000) end
  window_add(kr, 1, 120)
  window_add(orr, 1, 120)
  return answer('listed', raw, nil, {req.limit, req.left - 1, reset, tpm, tpm, 0})
end
-- listing:end
if model == '' then return answer('model_not_found', raw) end
if string.sub(model, 1, 1) == '!' then return answer('model_disabled', raw) end

local function member(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end
if (not ctx.p.all and not member(ctx.p.m, model)) or (ctx.am ~= cjson.null and not member(ctx.am, model)) then
  return answer('model_not_allowed', raw)
end

-- The caller's own refusal (the request cannot fit the model): after the checks that
-- say who may know about the model, before anything is counted.
if refuse ~= '' then return answer(refuse, raw) end

local plan = ctx.p

local kreq = window_read(k_key_requests(ctx.k), now, 60, 1)
local oreq = window_read(k_org_requests(ctx.o), now, 60, 1)
local ktok = window_read(k_key_tokens(ctx.k), now, 60, 1)
local otok = window_read(k_org_tokens(ctx.o), now, 60, 1)

-- The binding limits for the headers, after this request's own `extra_req` and `extra_tok`
-- (a window this request adds to resets a minute on at the latest).
local function limits(extra_req, extra_tok)
  local r = binding(kl[1], kreq, plan.rpm, oreq, extra_req)
  local t = binding(kl[2], ktok, plan.tpm, otok, extra_tok)
  local r_reset, t_reset = r.reset, t.reset
  if r_reset <= 0 and extra_req > 0 then r_reset = 60000 - (now % 1000) end
  if t_reset <= 0 and extra_tok > 0 then t_reset = 60000 - (now % 1000) end
  return {r.limit, math.max(r.left, 0), r_reset, t.limit, math.max(t.left, 0), t_reset}
end

local req = binding(kl[1], kreq, plan.rpm, oreq, 0)
if req.left < 1 then
  return answer('rate_requests', raw, nil, limits(0, 0), math.max(req.reset, 1000), nil, req.scope)
end
local tpm_cap, tpm_scope = plan.tpm, 'org'
if kl[2] < plan.tpm then tpm_cap, tpm_scope = kl[2], 'key' end
if est > tpm_cap then
  -- Larger than the whole limit: no wait helps (retry 0; the caller says so).
  local rl = limits(0, 0)
  rl[4] = tpm_cap
  return answer('rate_tokens', raw, nil, rl, 0, nil, tpm_scope)
end
local tok = binding(kl[2], ktok, plan.tpm, otok, 0)
if tok.left < est then
  return answer('rate_tokens', raw, nil, limits(0, 0), math.max(tok.reset, 1000), nil, tok.scope)
end

-- In-flight requests: leases that have not run out (swept now and then, below).
local kc, oc = k_key_concurrency(ctx.k), k_org_concurrency(ctx.o)
local live_from = '(' .. ARGV[3]
if redis.call('ZCOUNT', oc, live_from, '+inf') >= plan.cc then
  return answer('concurrency', raw, nil, limits(0, 0), 1000, nil, 'org')
end
if redis.call('ZCOUNT', kc, live_from, '+inf') >= kl[3] then
  return answer('concurrency', raw, nil, limits(0, 0), 1000, nil, 'key')
end

local wb = math.max(1, math.floor(plan.ws / 60))
local win = window_read(k_org_window(ctx.o), now, plan.ws, wb)
if win.total + 1 > plan.wr then
  return answer('window', raw, nil, limits(0, 0), math.max(win.reset, 1000))
end

local qkey = k_quota(ctx.o, ctx.ps)
local q = redis.call('HMGET', qkey, 'r', 't')
if not q[1] then return answer('quota_miss', raw) end
local qr, qt = tonumber(q[1]), tonumber(q[2])
if qr + 1 > plan.qr then return answer('quota_requests', raw, nil, limits(0, 0), ctx.pe - now) end
if qt + est > plan.qt then return answer('quota_tokens', raw, nil, limits(0, 0), ctx.pe - now) end

-- The key's budget: spent (settled) plus reserved micro-USD in this budget period.
local bkey
if budget then
  bkey = k_key_budget(ctx.k, fmt(budget.s))
  if est_cost < 0 then return answer('cost_miss', raw) end  -- the caller did not price it
  local spent = redis.call('GET', bkey)
  if not spent then return answer('budget_miss', raw) end
  if tonumber(spent) + est_cost > budget.a then
    return answer('budget', raw, nil, limits(0, 0), budget.e - now, nil, 'key')
  end
end

-- Router pick (routers.lua), before anything is written.
if ncand == 0 then return answer('no_router', raw, nil, limits(0, 0), 1000) end
local router = choose_router(now, cooldown, FIRST_CANDIDATE, ncand, rand)
if router == nil then return answer('no_router', raw, nil, limits(0, 0), 1000) end

-- Every check passed: record the request.
window_add(kreq, 1, 120)
window_add(oreq, 1, 120)
window_add(ktok, est, 120)
window_add(otok, est, 120)
-- Leases run out after lease_ms unless the owning process renews them (gateway/leases.py):
-- a process that dies frees its slots within a lease, and the reaper settles the request
-- from its live entry (what settle.lua would need, kept until it is settled).
local lease = fmt(now + lease_ms)
for _, set in ipairs({kc, oc}) do
  if sweep then redis.call('ZREMRANGEBYSCORE', set, '-inf', ARGV[3]) end
  redis.call('ZADD', set, lease, rid)
  redis.call('PEXPIRE', set, lease_ms)
end
window_add(win, 1, plan.ws + 60)
redis.call('HSET', qkey, 'r', fmt(qr + 1), 't', fmt(qt + est))
if bkey then redis.call('INCRBY', bkey, fmt(est_cost)) end
take_router(router, now, rid, lease_ms, probe_ttl, sweep)
redis.call('ZADD', k_live_index(), lease, rid)
local live = k_live(rid)
redis.call('HSET', live, 'k', ctx.k, 'o', ctx.o, 'ps', fmt(ctx.ps), 'est', fmt(est),
           'as', fmt(math.floor(now / 1000)), 'wb', fmt(wb), 'r', router.id)
if bkey then redis.call('HSET', live, 'bs', fmt(budget.s), 'bc', fmt(est_cost)) end
redis.call('PEXPIRE', live, 86400000)
return answer('ok', raw, nil, limits(1, est), 0, router.id)
