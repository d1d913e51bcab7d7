-- Expires a sale's orders whose pay-by time has passed, returning each one's unit to stock
-- and recording each transition's event.
--
-- KEYS[1] deadlines  zset: order id scored by its pay-by time (ms, Redis's clock), while unpaid
-- KEYS[2] status     hash: order id -> processing | created | paid | expired | failed
-- KEYS[3] stock      string: units left
-- KEYS[4] info, KEYS[5] owners, KEYS[6] transitions, KEYS[7] transitions_due (the outbox of
--         transition events, see transition.lua)
-- ARGV[1] at most this many orders
--
-- Returns the order ids expired by this call. An order leaves the deadlines as it becomes
-- final, whoever makes it so, so a unit is returned once per order however often this runs.

local record = transition_recorder(KEYS[4], KEYS[5], KEYS[6], KEYS[7])
local now_ms = clock_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local expired = {}
for _, order_id in ipairs(due) do
  redis.call('ZREM', KEYS[1], order_id)
  local status = redis.call('HGET', KEYS[2], order_id) or 'processing'
  if status == 'processing' or status == 'created' then
    redis.call('HSET', KEYS[2], order_id, 'expired')
    redis.call('INCR', KEYS[3])
    expired[#expired + 1] = order_id
  end
end
record(expired, 'expired', now_ms)
return expired
