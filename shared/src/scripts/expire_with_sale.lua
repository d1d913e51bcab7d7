-- Prelude of the scripts that count statistics: once a sale settled (settle_sale.lua gave its
-- keys a time to live), every key written later gets the time the sale's info key has left,
-- so a count that arrives after the settle expires with the sale instead of staying for good.
-- A sale not settled yet has no time to live, and nothing changes.
--
-- The sale's info key is the script's last KEYS entry; the keys before it are the ones it wrote.

local function expire_with_sale()
  local ttl = redis.call('PTTL', KEYS[#KEYS])
  if ttl > 0 then
    for i = 1, #KEYS - 1 do
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
