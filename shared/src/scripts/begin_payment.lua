-- Records a payment intent before the provider is asked to charge: the first of a payment's
-- three steps (intent, charge, pay.lua), so that a charge whose outcome the gateway never
-- learns is found by the payment resolver and ends paid or refunded. Refuses, writing nothing,
-- what pay.lua would refuse: an order already paid, expired, failed, past its pay-by time, or
-- not this buyer's.
--
-- KEYS[1] buyers         hash: user id -> order id (the owner check)
-- KEYS[2] status         hash: order id -> processing | created | paid | expired | failed
-- KEYS[3] deadlines      zset: order id scored by its pay-by time (ms, Redis's clock)
-- KEYS[4] payments       hash: order id -> amount in cents, while its payment is unsettled
-- KEYS[5] payments_due   zset: order id scored by when the resolver may look at it (ms)
-- ARGV[1] user id
-- ARGV[2] order id
-- ARGV[3] amount in cents
--
-- Returns recorded, already_paid, expired, failed or not_found.

local now_ms = clock_ms()
local refusal = payment_refusal(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now_ms)
if refusal then
  return refusal
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
-- A repeated attempt moves the look on: the resolver leaves a payment alone while a request
-- for it may still be running.
redis.call('ZADD', KEYS[5], now_ms, ARGV[2])
return 'recorded'
