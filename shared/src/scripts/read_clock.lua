-- The clock of the node that holds KEYS[1], in unix milliseconds. The key is only read for its
-- slot: on Redis Cluster a script runs on its keys' master, and that master's clock is the one
-- its own scripts compare deadlines with.
-- KEYS[1]: a key of the hash tag whose node's clock is wanted
return clock_ms()
