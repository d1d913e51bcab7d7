-- Records that orders could not be stored (their events went to the dead-letter topic) and
-- compensates: each one's unit returns to stock, once, and it leaves the outbox, the
-- reconciler's sets and the deadlines, with a 'failed' transition event. The event stays in
-- the dead-letter topic for an operator.
--
-- KEYS[1] outbox, KEYS[2] unpublished, KEYS[3] acknowledged, KEYS[4] status, KEYS[5] deadlines,
-- KEYS[6] stock, KEYS[7] info, KEYS[8] owners, KEYS[9] transitions, KEYS[10] transitions_due,
-- KEYS[11] payments, KEYS[12] payments_due (all of one sale)
-- ARGV    order ids
--
-- Only an order this sale locked and has not stored is compensated: it is still in the
-- outbox, and still processing, or paid while processing. A paid one's charge no longer buys
-- anything: its payment is opened again, due at once, and the payment resolver refunds it.
-- Anything else (an order id the sale never locked, an order expired meanwhile, a repeated
-- report) keeps its status and returns nothing.

local record = transition_recorder(KEYS[7], KEYS[8], KEYS[9], KEYS[10])
local now_ms = clock_ms()
local failed = {}
local price_cents = nil
for _, order_id in ipairs(ARGV) do
  local locked = redis.call('HDEL', KEYS[1], order_id) == 1
  local status = redis.call('HGET', KEYS[4], order_id)
  if locked and (status == 'processing' or status == 'paid') then
    redis.call('HSET', KEYS[4], order_id, 'failed')
    redis.call('INCR', KEYS[6])
    failed[#failed + 1] = order_id
    if status == 'paid' then
      price_cents = price_cents or cjson.decode(redis.call('GET', KEYS[7])).price_cents
      redis.call('HSET', KEYS[11], order_id, price_cents)
      redis.call('ZADD', KEYS[12], 0, order_id)
    end
  end
  redis.call('ZREM', KEYS[2], order_id)
  redis.call('ZREM', KEYS[3], order_id)
  redis.call('ZREM', KEYS[5], order_id)
end
record(failed, 'failed', now_ms)
return 0
