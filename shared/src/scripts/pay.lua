-- Pays an order, or finds that it can no longer be paid: payment and expiry race on this one
-- step, so exactly one of them wins.
--
-- KEYS[1] buyers     hash: user id -> order id (the owner check)
-- KEYS[2] status     hash: order id -> processing | created | paid | expired | failed
-- KEYS[3] deadlines  zset: order id scored by its pay-by time (ms, Redis's clock), while unpaid
-- KEYS[4] info, KEYS[5] owners, KEYS[6] transitions, KEYS[7] transitions_due (the outbox of
--         transition events, see transition.lua)
-- KEYS[8] payments, KEYS[9] payments_due (the payment intents, see begin_payment.lua)
-- ARGV[1] user id
-- ARGV[2] order id
--
-- Returns paid, already_paid, expired, failed or not_found (not this user's order). A payment
-- after the pay-by time answers expired and changes nothing, like every refusal: the expiry
-- sweep ends the order and returns its unit. A late payment never wins over a passed deadline.
--
-- The caller has charged before calling: a paid order's charge is its sale, so its payment
-- intent is settled here, in the same step. A refused one keeps its intent until the charge is
-- refunded (by the caller, or else by the payment resolver).

local function settle_intent()
  redis.call('HDEL', KEYS[8], ARGV[2])
  redis.call('ZREM', KEYS[9], ARGV[2])
end

local now_ms = clock_ms()
local refusal = payment_refusal(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now_ms)
if refusal == 'already_paid' then
  settle_intent()
end
if refusal then
  return refusal
end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], 'paid')
settle_intent()
transition_recorder(KEYS[4], KEYS[5], KEYS[6], KEYS[7])({ARGV[2]}, 'paid', now_ms)
return 'paid'
