-- Records the broker's acknowledgement of orders' events: each moves from the unpublished set
-- to the acknowledged set, scored by the time of the acknowledgement (Redis's clock). An order
-- whose row is stored already (no longer unpublished) is left alone.
--
-- KEYS[1] unpublished, KEYS[2] acknowledged (both of one sale)
-- ARGV    order ids

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for _, order_id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], order_id) == 1 then
    redis.call('ZADD', KEYS[2], now_ms, order_id)
  end
end
return 0
