-- Records the broker's acknowledgement of orders' events: each moves from the unpublished set
-- to the acknowledged set, scored by the time of the acknowledgement (Redis's clock). An order
-- whose row is stored already (no longer unpublished) is left alone.
--
-- KEYS[1] unpublished, KEYS[2] acknowledged (both of one sale)
-- ARGV    order ids
--
-- ZMSCORE (Redis 6.2 or later) finds which of a slice's orders are still unpublished at once.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
each_slice(ARGV, function(order_ids)
  local unpublished_since = redis.call('ZMSCORE', KEYS[1], unpack(order_ids))
  local waiting, acknowledged = {}, {}
  for i, order_id in ipairs(order_ids) do
    if unpublished_since[i] then
      waiting[#waiting + 1] = order_id
      acknowledged[#acknowledged + 1] = now_ms
      acknowledged[#acknowledged + 1] = order_id
    end
  end
  if #waiting > 0 then
    redis.call('ZREM', KEYS[1], unpack(waiting))
    redis.call('ZADD', KEYS[2], unpack(acknowledged))
  end
end)
return 0
