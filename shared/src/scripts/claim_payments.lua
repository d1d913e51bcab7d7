-- Hands the payment resolver the sale's payment intents due for a look, oldest first, each
-- with its buyer and its order's status, and moves each one's next look on: an intent the
-- resolver cannot settle yet (a charge never made, on an order still open) comes back only
-- after another full age.
--
-- KEYS[1] payments_due   zset: order id scored by when the resolver may look at it (ms)
-- KEYS[2] owners         hash: order id -> the buyer's user id
-- KEYS[3] status         hash: order id -> processing | created | paid | expired | failed
-- ARGV[1] the newest score handed out (now minus the resolver's age, ms on Redis's clock)
-- ARGV[2] at most this many
--
-- Returns a flat list: order id, user id, status (processing when none is recorded), ...

local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
if #due == 0 then
  return {}
end
local now_ms = clock_ms()
local users = redis.call('HMGET', KEYS[2], unpack(due))
local statuses = redis.call('HMGET', KEYS[3], unpack(due))
local claimed, next_look = {}, {}
for i, order_id in ipairs(due) do
  claimed[#claimed + 1] = order_id
  claimed[#claimed + 1] = users[i] or ''
  claimed[#claimed + 1] = statuses[i] or 'processing'
  next_look[#next_look + 1] = now_ms
  next_look[#next_look + 1] = order_id
end
redis.call('ZADD', KEYS[1], unpack(next_look))
return claimed
