-- Settles a sale whose work is done: nothing waits in its outbox, no order awaits payment (an
-- expiry would return a unit), no transition event waits for the broker, no payment awaits
-- its settling (a charge to complete or refund), and no purchase can add to it (it is sold
-- out, or the caller found it ended). Every key of the sale then expires after the
-- retention, which is longer than the topic keeps events, so a late redelivery still finds its
-- order's keys.
--
-- KEYS[1] outbox, KEYS[2] stock, KEYS[3] deadlines, KEYS[4] transitions, KEYS[5] payments,
-- then every other key of the sale
-- ARGV[1] 1 when the sale has ended, else 0
-- ARGV[2] retention in milliseconds
--
-- Returns 1 when settled, 0 when work remains (nothing is changed).

if redis.call('HLEN', KEYS[1]) > 0 or redis.call('ZCARD', KEYS[3]) > 0
    or redis.call('HLEN', KEYS[4]) > 0 or redis.call('HLEN', KEYS[5]) > 0 then
  return 0
end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[1] ~= '1' and stock > 0 then
  return 0
end
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1
