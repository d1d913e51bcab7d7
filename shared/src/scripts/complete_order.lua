-- Records that an order row is durably stored: it leaves the outbox (and the unpublished or
-- acknowledged set it waited in), and a processing order becomes created, with its transition
-- event. An order paid or expired meanwhile keeps that status: a status only moves forward.
--
-- KEYS[1] outbox, KEYS[2] unpublished, KEYS[3] status, KEYS[4] acknowledged,
-- KEYS[5] info, KEYS[6] owners, KEYS[7] transitions, KEYS[8] transitions_due (all of one sale)
-- ARGV    order ids
--
-- Returns the number of outbox entries removed. Running it twice changes nothing more.

local record = transition_recorder(KEYS[5], KEYS[6], KEYS[7], KEYS[8])
local now_ms = clock_ms()
local removed = 0
for _, order_id in ipairs(ARGV) do
  removed = removed + redis.call('HDEL', KEYS[1], order_id)
  redis.call('ZREM', KEYS[2], order_id)
  redis.call('ZREM', KEYS[4], order_id)
  if redis.call('HGET', KEYS[3], order_id) == 'processing' then
    redis.call('HSET', KEYS[3], order_id, 'created')
    record(order_id, 'created', now_ms)
  end
end
return removed
