-- Prepended to every script that changes an order's status (complete_order, pay,
-- expire_due, fail_orders): it records the change's event in the sale's transition outbox in
-- the same atomic step as the change itself, so no transition is ever made without its event.
-- A relay publishes the outbox to the order-event topic and removes what the broker
-- acknowledged (claim_transitions.lua).
--
-- The event is {version, event_id, order_id, sale_id, user_id, price_cents, status, at}, with
-- event_id '<order id>:<status>' (one per order and status) and at in unix milliseconds on
-- Redis's clock.

-- Returns record(order_ids, status, at_ms), writing into the outbox whose keys are given:
-- info (the sale's JSON), owners (order id -> user id), transitions (event id -> event JSON),
-- transitions_due (event id scored by when it is due for publishing). A whole list of orders
-- costs three commands per slice, not three per order: the order worker completes hundreds at
-- once.
local function transition_recorder(info_key, owners_key, transitions_key, due_key)
  local sale = nil
  return function(order_ids, status, at_ms)
    each_slice(order_ids, function(slice)
      sale = sale or cjson.decode(redis.call('GET', info_key))
      local users = redis.call('HMGET', owners_key, unpack(slice))
      local events, due = {}, {}
      for i, order_id in ipairs(slice) do
        local event_id = order_id .. ':' .. status
        events[#events + 1] = event_id
        events[#events + 1] = cjson.encode({
          version = 1,
          event_id = event_id,
          order_id = order_id,
          sale_id = sale.id,
          user_id = users[i],
          price_cents = sale.price_cents,
          status = status,
          at = at_ms,
        })
        due[#due + 1] = at_ms
        due[#due + 1] = event_id
      end
      redis.call('HSET', transitions_key, unpack(events))
      redis.call('ZADD', due_key, unpack(due))
    end)
  end
end
