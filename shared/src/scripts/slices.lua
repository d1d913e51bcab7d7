-- Prepended to every script that handles a batch: one command for a whole slice of ids
-- instead of one per id, which is most of a script's cost inside Redis.

-- Calls f(slice) for each slice of at most 1000 items of list, in order: short enough to pass
-- to one command with unpack, whose results must fit Lua's C stack (about 8000).
local function each_slice(list, f)
  for first = 1, #list, 1000 do
    f({unpack(list, first, math.min(first + 999, #list))})
  end
end

