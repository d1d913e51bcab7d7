-- Adds to counters, once per event id: the id is recorded in the same atomic step as the
-- addition, so a redelivered or re-published event adds nothing.
--
-- KEYS[1] applied  sorted set: event id -> unix ms it was applied (Redis's clock)
-- KEYS[2] values   hash:       counter key -> value
-- ARGV[1] how long an event id is remembered, in milliseconds
-- ARGV[2..] triples: event id, counter key, amount
--
-- Returns how many of the additions were new.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[1]))
local applied = 0
for i = 2, #ARGV, 3 do
  if redis.call('ZADD', KEYS[1], 'NX', now_ms, ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    applied = applied + 1
  end
end
return applied
