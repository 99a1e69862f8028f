-- A stream is about to send its first content: record what its bill needs in its live
-- entry, so a process that dies from here on still gets the request billed (reap.lua).
--
-- ARGV: prefix, request_id, bill (JSON: the request record's fields), prompt_tokens
-- Returns 1, or 0 when the request is no longer live (reaped).

local live = k_live(ARGV[2])
if redis.call('EXISTS', live) == 0 then return 0 end
redis.call('HSET', live, 'bill', ARGV[3], 'pt', ARGV[4], 'ct', '0')
return 1
