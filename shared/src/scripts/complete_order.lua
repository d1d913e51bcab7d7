-- Records that an order row is durably stored: it leaves the outbox (and the unpublished or
-- acknowledged set it waited in), and a processing order becomes created. An order paid or
-- expired meanwhile keeps that status: a status only moves forward.
--
-- KEYS[1] outbox, KEYS[2] unpublished, KEYS[3] status, KEYS[4] acknowledged (all of one sale)
-- ARGV    order ids
--
-- Returns the number of outbox entries removed. Running it twice changes nothing more.

local removed = 0
for _, order_id in ipairs(ARGV) do
  removed = removed + redis.call('HDEL', KEYS[1], order_id)
  redis.call('ZREM', KEYS[2], order_id)
  redis.call('ZREM', KEYS[4], order_id)
  local status = redis.call('HGET', KEYS[3], order_id)
  if not status or status == 'processing' then
    redis.call('HSET', KEYS[3], order_id, 'created')
  end
end
return removed
