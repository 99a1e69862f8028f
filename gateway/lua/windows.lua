-- Shared by admit.lua and settle.lua (prepended when the scripts are loaded).
--
-- A sliding window is one hash: a bucket per `bucket_s` seconds, a running total
-- ('n') and the oldest bucket still counted ('c'). Reading expires only the buckets
-- that left since the last read, so a check costs the same however busy the window.
-- Every counted unit lives in a bucket >= 'c'.

-- Returns total, ms until the oldest counted bucket leaves, the current bucket and
-- the cursor to record with the next add.
local function window_read(key, now, span_s, bucket_s)
  local nb = math.floor(span_s / bucket_s)
  local cur = math.floor(math.floor(now / 1000) / bucket_s)
  local lo = cur - nb + 1
  local st = redis.call('HMGET', key, 'n', 'c')
  local total = tonumber(st[1]) or 0
  local c = tonumber(st[2]) or cur
  if c < lo then
    if total > 0 and lo - c < nb then
      local gone = {}
      for b = c, lo - 1 do gone[#gone + 1] = b end
      local vals = redis.call('HMGET', key, unpack(gone))
      for _, v in ipairs(vals) do if v then total = total - tonumber(v) end end
      if total < 0 then total = 0 end
      redis.call('HDEL', key, unpack(gone))
    elseif total > 0 then
      redis.call('DEL', key)  -- everything counted has left the window
      total = 0
    end
    c = cur
    if total > 0 then
      -- The cursor moves to the oldest bucket still holding something: the reset time.
      local live = {}
      for b = lo, cur do live[#live + 1] = b end
      local vals = redis.call('HMGET', key, unpack(live))
      for i, v in ipairs(vals) do
        if v and tonumber(v) > 0 then c = lo + i - 1; break end
      end
    end
    if st[1] then
      redis.call('HSET', key, 'n', total, 'c', c)
      redis.call('EXPIRE', key, nb * bucket_s + 60)
    end
  end
  if cur < c then cur = c end  -- a clock behind another process's: count in the oldest live bucket
  local reset = 0
  if total > 0 then reset = (c + nb) * bucket_s * 1000 - now end
  return total, reset, cur, c
end

local function window_add(key, bucket, c, amount, ttl_s)
  redis.call('HINCRBY', key, bucket, amount)
  redis.call('HINCRBY', key, 'n', amount)
  redis.call('HSET', key, 'c', c)
  redis.call('EXPIRE', key, ttl_s)
end

-- Add `delta` to a bucket still counted (a settled reservation); never below zero.
local function window_adjust(key, bucket, delta)
  local st = redis.call('HMGET', key, 'c', bucket)
  local c = tonumber(st[1])
  if c == nil or st[2] == false or tonumber(bucket) < c then return end
  local v = redis.call('HINCRBY', key, bucket, delta)
  if v < 0 then
    redis.call('HSET', key, bucket, 0)
    delta = delta - v
  end
  redis.call('HINCRBY', key, 'n', delta)
end

