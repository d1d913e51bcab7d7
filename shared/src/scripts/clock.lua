-- Prepended to the scripts that read the time: Redis's own clock in unix milliseconds, the one
-- clock every age and deadline of the ledger is measured on.

local function clock_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

