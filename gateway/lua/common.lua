-- Prepended to every gateway script. Numbers go to Redis through fmt(): Lua's default
-- number format writes large integers in exponent notation.
local function fmt(n) return string.format('%d', n) end
