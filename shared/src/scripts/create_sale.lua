-- Creates a sale unless its id is taken, and pre-warms its stock counter.
--
-- KEYS[1] info   string: the sale as JSON
-- KEYS[2] stock  string: units left
-- ARGV[1] the sale as JSON
-- ARGV[2] the initial stock
--
-- Returns 1 when created, 0 when a sale with this id already exists (nothing is changed).

if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
