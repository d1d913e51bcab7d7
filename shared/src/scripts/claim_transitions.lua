-- Hands the relay the transition events of one sale that are due for publishing (new, or
-- published earlier without an acknowledgement for the redelivery delay), and makes each due
-- again only after that delay, so a second relay pass does not publish it twice meanwhile.
-- The broker's acknowledgement removes an event from the outbox (HDEL and ZREM, no script).
--
-- KEYS[1] transitions      hash: event id -> event JSON
-- KEYS[2] transitions_due  zset: event id scored by when it is due (ms, Redis's clock)
-- ARGV[1] at most this many events
-- ARGV[2] redelivery delay (ms)
--
-- Returns {event id, event JSON, event id, event JSON, ...}: the id removes an entry whose JSON
-- is broken.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local events = {}
each_slice(due, function(event_ids)
  local found = redis.call('HMGET', KEYS[1], unpack(event_ids))
  local redue, gone = {}, {}
  for i, event_id in ipairs(event_ids) do
    if found[i] then
      events[#events + 1] = {event_id, found[i]}
      redue[#redue + 1] = now_ms + tonumber(ARGV[2])
      redue[#redue + 1] = event_id
    else
      gone[#gone + 1] = event_id
    end
  end
  if #redue > 0 then
    redis.call('ZADD', KEYS[2], unpack(redue))
  end
  if #gone > 0 then
    redis.call('ZREM', KEYS[2], unpack(gone))
  end
end)
return events
