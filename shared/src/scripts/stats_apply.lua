-- Counts one accepted order in its sale's statistics, exactly once per event id.
--
-- KEYS[1] stats events    set:  event ids already counted
-- KEYS[2] stats           hash: sold, revenue_cents
-- KEYS[3] stats buyers    set:  distinct buyers
-- KEYS[4] stats timeline  hash: unix second -> units sold in that second
-- KEYS[5] info            the sale's, for its time to live (expire_with_sale.lua)
-- ARGV[1] event id  ARGV[2] user id  ARGV[3] units  ARGV[4] revenue in cents
-- ARGV[5] unix second of the reservation
--
-- Returns 1 when counted, 0 when this event id was counted before (nothing changes).

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'sold', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'revenue_cents', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[5], ARGV[3])
expire_with_sale()
return 1
