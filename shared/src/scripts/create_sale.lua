-- Creates a sale unless its id was ever taken, and pre-warms its stock counter.
--
-- KEYS[1] taken  string: the id's marker, never expiring (settle_sale.lua leaves it alone), so
--                an id stays taken after the sale's other keys expired; its orders may still
--                be in the order table, which refuses a second order per (sale, buyer)
-- KEYS[2] info   string: the sale as JSON
-- KEYS[3] stock  string: units left
-- ARGV[1] the sale as JSON
-- ARGV[2] the initial stock
--
-- Returns 1 when created, 0 when the id is taken (nothing is changed). The info key counts
-- too, for a sale created before the marker existed.

if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('SET', KEYS[1], '1')
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return 1
