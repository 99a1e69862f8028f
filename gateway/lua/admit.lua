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
--       model; "" for none), n_candidates, then (router_id, weight, tier) per candidate.
-- Returns {status, ctx_json, catalog_version, pause_message, rpm_limit, rpm_left,
--          rpm_reset_ms, tpm_limit, tpm_left, tpm_reset_ms, retry_after_ms, router_id}

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
local ncand = tonumber(ARGV[14])

local head = redis.call('MGET', k_catalog_version(), k_pause(), k_authctx(key_hash))
local version = head[1] or ''

local function answer(status, ctx, pause, rl, retry, router)
  rl = rl or {0, 0, 0, 0, 0, 0}
  return {status, ctx or '', version, pause or '', rl[1], rl[2], rl[3], rl[4], rl[5], rl[6],
          retry or 0, router or 0}
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

if ctx.ks == 'revoked' then return answer('revoked', raw) end
if ctx.ks == 'disabled' then return answer('disabled', raw) end
if ctx.kx > 0 and now >= ctx.kx then return answer('expired', raw) end
if ctx.os == 'paused' then return answer('org_paused', raw) end
if ctx.os ~= 'active' then return answer('org_disabled', raw) end
-- listing:begin (tests/gateway/test_refusals.py reads the request's refusals without it)
if model == '?' then return answer('listed', raw) end
if listing then
  local kr = window_read(k_key_requests(ctx.k), now, 60, 1)
  local orr = window_read(k_org_requests(ctx.o), now, 60, 1)
  local used, reset = math.max(kr.total, orr.total), math.max(kr.reset, orr.reset)
  if used + 1 > ctx.p.rpm then
    return answer('rate_requests', raw, nil, {ctx.p.rpm, 0, reset, ctx.p.tpm, ctx.p.tpm, 0}, math.max(reset, 1000))
  end
  if reset <= 0 then reset = 60000 - (now % 1000) end
  window_add(kr, 1, 120)
  window_add(orr, 1, 120)
  return answer('listed', raw, nil, {ctx.p.rpm, ctx.p.rpm - used - 1, reset, ctx.p.tpm, ctx.p.tpm, 0})
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

local used_req = math.max(kreq.total, oreq.total)
local req_reset = math.max(kreq.reset, oreq.reset)
local used_tok = math.max(ktok.total, otok.total)
local tok_reset = math.max(ktok.reset, otok.reset)
local function limits(extra_req, extra_tok)
  return {plan.rpm, math.max(plan.rpm - used_req - extra_req, 0), req_reset,
          plan.tpm, math.max(plan.tpm - used_tok - extra_tok, 0), tok_reset}
end

if used_req + 1 > plan.rpm then
  return answer('rate_requests', raw, nil, limits(0, 0), math.max(req_reset, 1000))
end
if est > plan.tpm then
  -- Larger than the whole limit: no wait helps (retry 0; the caller says so).
  return answer('rate_tokens', raw, nil, limits(0, 0), 0)
end
if used_tok + est > plan.tpm then
  return answer('rate_tokens', raw, nil, limits(0, 0), math.max(tok_reset, 1000))
end

-- In-flight requests: leases that have not run out (swept now and then, below).
local kc, oc = k_key_concurrency(ctx.k), k_org_concurrency(ctx.o)
local live_from = '(' .. ARGV[3]
if redis.call('ZCOUNT', kc, live_from, '+inf') >= plan.cc or redis.call('ZCOUNT', oc, live_from, '+inf') >= plan.cc then
  return answer('concurrency', raw, nil, limits(0, 0), 1000)
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

-- Router pick (routers.lua), before anything is written.
if ncand == 0 then return answer('no_router', raw, nil, limits(0, 0), 1000) end
local router = choose_router(now, cooldown, 15, ncand, rand)
if router == nil then return answer('no_router', raw, nil, limits(0, 0), 1000) end

-- Every check passed: record the request (its own bucket now bounds the resets).
if req_reset <= 0 then req_reset = 60000 - (now % 1000) end
if tok_reset <= 0 then tok_reset = 60000 - (now % 1000) end
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
take_router(router, now, rid, lease_ms, probe_ttl, sweep)
redis.call('ZADD', k_live_index(), lease, rid)
local live = k_live(rid)
redis.call('HSET', live, 'k', ctx.k, 'o', ctx.o, 'ps', fmt(ctx.ps), 'est', fmt(est),
           'as', fmt(math.floor(now / 1000)), 'wb', fmt(wb), 'r', router.id)
redis.call('PEXPIRE', live, 86400000)
return answer('ok', raw, nil, limits(1, est), 0, router.id)
