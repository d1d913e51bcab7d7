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
-- A handful of commands per slice of the batch, not per order.
each_slice(ARGV, function(order_ids)
  removed = removed + redis.call('HDEL', KEYS[1], unpack(order_ids))
  redis.call('ZREM', KEYS[2], unpack(order_ids))
  redis.call('ZREM', KEYS[4], unpack(order_ids))
  local statuses = redis.call('HMGET', KEYS[3], unpack(order_ids))
  local created, new_statuses = {}, {}
  for i, order_id in ipairs(order_ids) do
    if statuses[i] == 'processing' then
      created[#created + 1] = order_id
      new_statuses[#new_statuses + 1] = order_id
      new_statuses[#new_statuses + 1] = 'created'
    end
  end
  if #created > 0 then
    redis.call('HSET', KEYS[3], unpack(new_statuses))
    record(created, 'created', now_ms)
  end
end)
return removed
