-- Settle the requests whose process died (their lease ran out unrenewed), once, and hand
-- back those that had sent content so their records can be written (gateway/leases.py).
--
-- A request that had started streaming content has a 'bill' in its live entry (written
-- before its first text went out, with its prompt tokens 'pt') and 'ct', the completion
-- tokens the Portal counted as sent as of its last renewal: it is settled as served with
-- pt + ct tokens. One that had sent nothing gives its whole reservation back.
-- Handed-back entries wait in the reaped set until the records are written and acknowledged;
-- entries not acknowledged within reclaim_ms (the reaper died) are handed out again, and the
-- record write is idempotent on the request id.
--
-- ARGV: prefix, now_ms, limit, failure_threshold, reclaim_ms
-- Returns a flat list: request_id, then its live entry as field/value pairs, per request.

local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local reclaim = tonumber(ARGV[5])
local idx, reaped = k_live_index(), k_reaped()
local out = {}

for _, rid in ipairs(redis.call('ZRANGEBYSCORE', reaped, '-inf', fmt(now - reclaim), 'LIMIT', 0, limit)) do
  redis.call('ZADD', reaped, fmt(now), rid)
  out[#out + 1] = rid
  out[#out + 1] = redis.call('HGETALL', k_live(rid))
end

for _, rid in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', fmt(now), 'LIMIT', 0, limit)) do
  redis.call('ZREM', idx, rid)
  local live = k_live(rid)
  local h = redis.call('HMGET', live, 'k', 'o', 'ps', 'est', 'as', 'wb', 'r', 'bill', 'pt', 'ct',
                      'bs', 'bc')
  if h[1] then
    local served, actual, cost = 0, 0, 0
    if h[8] then
      served = 1
      local pt, ct = tonumber(h[9]) or 0, tonumber(h[10]) or 0
      actual = pt + ct
      if h[11] then
        -- The cost billed (metering.pricing's rule: rounded up to the whole micro-USD).
        local bill = cjson.decode(h[8])
        cost = math.ceil((pt * bill['in'] + ct * bill['out']) / 1000000)
      end
    end
    release_request(rid, h[1], h[2], h[3], h[7] or '', '', h[5], tonumber(h[4]), actual, served,
                    threshold, now, tonumber(h[6]), false, h[11] or '', tonumber(h[12]) or 0, cost)
    if served == 1 then
      redis.call('HSET', live, 'tokens', fmt(actual))
      redis.call('ZADD', reaped, fmt(now), rid)
      out[#out + 1] = rid
      out[#out + 1] = redis.call('HGETALL', live)
    else
      redis.call('DEL', live)
    end
  end
end
return out
