-- Counts one order transition in its sale's statistics, exactly once per event id.
--
-- KEYS[1] stats events  set:  event ids already counted
-- KEYS[2] stats         hash: sold, revenue_cents, and per status: created, paid, expired,
--                             failed; paid_revenue_cents
-- KEYS[3] info          the sale's, for its time to live (expire_with_sale.lua)
-- ARGV[1] event id  ARGV[2] status  ARGV[3] the unit's price in cents
--
-- Returns 1 when counted, 0 when this event id was counted before (nothing changes).
--
-- An order paid while processing whose row was then refused fails after its payment, and its
-- charge is refunded: it counts as failed, not as paid, whichever of its two events comes first.

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local order_id = string.sub(ARGV[1], 1, #ARGV[1] - #ARGV[2] - 1)
if ARGV[2] == 'paid' then
  if redis.call('SISMEMBER', KEYS[1], order_id .. ':failed') == 1 then
    redis.call('HINCRBY', KEYS[2], 'paid', -1)
  else
    redis.call('HINCRBY', KEYS[2], 'paid_revenue_cents', ARGV[3])
  end
elseif ARGV[2] == 'failed' and redis.call('SISMEMBER', KEYS[1], order_id .. ':paid') == 1 then
  redis.call('HINCRBY', KEYS[2], 'paid', -1)
  redis.call('HINCRBY', KEYS[2], 'paid_revenue_cents', -tonumber(ARGV[3]))
end
expire_with_sale()
return 1
