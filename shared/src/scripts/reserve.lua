-- Locks one unit of a sale's stock for one buyer: the whole purchase decision, atomically.
--
-- KEYS[1] stock        string: units left; absent means the sale does not exist
-- KEYS[2] buyers       hash:   user id -> order id (one purchase per buyer)
-- KEYS[3] outbox       hash:   order id -> event JSON, until the order row is stored
-- KEYS[4] unpublished  zset:   order id scored by reservation time (ms, Redis's clock), until
--                              the broker acknowledges the event
-- KEYS[5] status       hash:   order id -> processing | created | paid | expired | failed
-- KEYS[6] deadlines    zset:   order id scored by its pay-by time (ms, Redis's clock), until
--                              the order is paid, expires or fails
-- KEYS[7] owners       hash:   order id -> user id (for the order's transition events)
-- ARGV[1] user id
-- ARGV[2] order id
-- ARGV[3] event JSON (published as is, and re-published as is by the reconciler)
-- ARGV[4] run-by time (ms, Redis's clock): the caller stops waiting then, so a lock that only
--         gets to run later (queued behind a paused or busy Redis) must lock nothing
-- ARGV[5] the order's pay-by time (ms, Redis's clock), as the event tells the buyer: the
--         payment window from the gateway's reading of this clock, closed at the sale's end
--
-- Times are Redis's own (TIME): the reconciler measures ages on the same clock, whatever the
-- clocks of the gateways and workers say.
--
-- Returns {outcome, remaining, order id}: outcome is reserved, already_purchased, sold_out,
-- unknown_sale or late; the order id is the buyer's existing order for already_purchased,
-- else ''. The duplicate check comes before the stock check, and nothing is written unless
-- the outcome is reserved. The lock is idempotent on the order id: the same attempt sent
-- again (a client resends a command after a reconnect) answers reserved again, writing
-- nothing, since its unit is already locked; its run-by time is the first one's, so a repeat
-- that comes too late is late.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now_ms > tonumber(ARGV[4]) then
  return {'late', 0, ''}
end

local stock = redis.call('GET', KEYS[1])
if not stock then
  return {'unknown_sale', 0, ''}
end
stock = tonumber(stock)
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing == ARGV[2] then
  return {'reserved', stock, ''}
end
if existing then
  return {'already_purchased', stock, existing}
end
if stock <= 0 then
  return {'sold_out', 0, ''}
end

local remaining = redis.call('DECR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], now_ms, ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], 'processing')
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[7], ARGV[2], ARGV[1])
return {'reserved', remaining, ''}
