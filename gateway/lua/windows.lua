-- Shared by admit.lua and settle.lua (prepended when the scripts are loaded).
--
-- A sliding window is one hash: a bucket per `bucket_s` seconds, a running total
-- ('n') and the oldest bucket still counted ('c'). Reading expires only the buckets
-- that left since the last read, so a check costs the same however busy the window,
-- and an add is one HSET (plus an EXPIRE when it opens a bucket). Every counted unit
-- lives in a bucket >= 'c'.

-- Returns the window as read: {key, total, reset (ms until the oldest counted bucket
-- leaves), cur (the bucket to add to), c (the cursor to record), v (cur's count or nil)}.
local function window_read(key, now, span_s, bucket_s)
  local nb = math.floor(span_s / bucket_s)
  local cur = math.floor(math.floor(now / 1000) / bucket_s)
  local lo = cur - nb + 1
  local st = redis.call('HMGET', key, 'n', 'c', fmt(cur))
  local total = tonumber(st[1]) or 0
  local c = tonumber(st[2]) or cur
  local v = tonumber(st[3])
  if c < lo then
    if total > 0 and lo - c < nb then
      local gone = {}
      for b = c, lo - 1 do gone[#gone + 1] = fmt(b) end
      local vals = redis.call('HMGET', key, unpack(gone))
      for _, x in ipairs(vals) do if x then total = total - tonumber(x) end end
      if total < 0 then total = 0 end
      redis.call('HDEL', key, unpack(gone))
    elseif total > 0 then
      redis.call('DEL', key)  -- everything counted has left the window
      total, v = 0, nil
    end
    c = cur
    if total > 0 then
      -- The cursor moves to the oldest bucket still holding something: the reset time.
      local live = {}
      for b = lo, cur do live[#live + 1] = fmt(b) end
      local vals = redis.call('HMGET', key, unpack(live))
      for i, x in ipairs(vals) do
        if x and tonumber(x) > 0 then c = lo + i - 1; break end
      end
    end
    if st[1] then
      redis.call('HSET', key, 'n', fmt(total), 'c', fmt(c))
      redis.call('EXPIRE', key, nb * bucket_s + 60)
    end
  end
  if cur < c then  -- a clock behind another process's: count in the oldest live bucket
    cur = c
    v = tonumber(redis.call('HGET', key, fmt(cur)))
  end
  local reset = 0
  if total > 0 then reset = (c + nb) * bucket_s * 1000 - now end
  return {key = key, total = total, reset = reset, cur = cur, c = c, v = v}
end

local function window_add(w, amount, ttl_s)
  redis.call('HSET', w.key, fmt(w.cur), fmt((w.v or 0) + amount), 'n', fmt(w.total + amount), 'c', fmt(w.c))
  if w.v == nil then redis.call('EXPIRE', w.key, ttl_s) end
end

-- Add `delta` to a bucket still counted (a settled reservation); never below zero.
local function window_adjust(key, bucket, delta)
  local st = redis.call('HMGET', key, 'c', bucket, 'n')
  local c = tonumber(st[1])
  if c == nil or st[2] == false or tonumber(bucket) < c then return end
  local v = tonumber(st[2]) + delta
  if v < 0 then
    delta = delta - v
    v = 0
  end
  redis.call('HSET', key, bucket, fmt(v), 'n', fmt(math.max((tonumber(st[3]) or 0) + delta, 0)))
end
