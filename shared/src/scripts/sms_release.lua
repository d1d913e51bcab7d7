-- Gives up a holder's claim on an order's SMS (its send failed), unless the record says
-- something else by now.
--
-- KEYS[1] the order's SMS record
-- ARGV[1] the holder

if redis.call('GET', KEYS[1]) == 'claim:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
