-- Acquires a lease if it is free, or renews it if the caller already holds it.
--
-- KEYS[1] the lease
-- ARGV[1] the caller's holder id
-- ARGV[2] lifetime in milliseconds
--
-- Returns 1 when the caller holds the lease afterwards, 0 when someone else does.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
