-- Prepended to the two scripts of a payment (begin_payment.lua, pay.lua): what both refuse.
--
-- Returns nil when `user_id` may pay `order_id` at `now_ms`; otherwise the refusal:
-- not_found (not this buyer's order), already_paid, expired, failed, or expired for a pay-by
-- time already passed. Reads buyers (user id -> order id), status and deadlines (pay-by ms).

local function payment_refusal(buyers_key, status_key, deadlines_key, user_id, order_id, now_ms)
  if redis.call('HGET', buyers_key, user_id) ~= order_id then
    return 'not_found'
  end
  local status = redis.call('HGET', status_key, order_id) or 'processing'
  if status == 'paid' then
    return 'already_paid'
  end
  if status == 'expired' or status == 'failed' then
    return status
  end
  local pay_by = redis.call('ZSCORE', deadlines_key, order_id)
  if pay_by and now_ms > tonumber(pay_by) then
    return 'expired'
  end
  return nil
end

