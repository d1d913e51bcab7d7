-- Claims an order's SMS for one sender, so no other instance sends it meanwhile.
--
-- KEYS[1] the order's SMS record: 'sent', or 'claim:<holder>' while a holder sends
-- ARGV[1] the holder (one per worker instance)
-- ARGV[2] how long the claim lasts, in milliseconds (a holder that dies loses it then)
--
-- Returns 'sent' (nothing to do), 'theirs' (another holder's claim lasts), or 'mine' (the
-- caller may send; its claim is set, or renewed).

local current = redis.call('GET', KEYS[1])
if current == 'sent' then
  return 'sent'
end
local mine = 'claim:' .. ARGV[1]
if current and current ~= mine then
  return 'theirs'
end
redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
return 'mine'
