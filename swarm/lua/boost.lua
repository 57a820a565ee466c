-- boost: a person deposits pheromone on an open task so the swarm takes it sooner.
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = amount (> 0), ARGV[3] = who, ARGV[4] = now (ms)
-- Returns 1, or 0 when the task is not open.
local tid, amount, who, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not deposit(tid, amount, now) then return 0 end
emit(now, 'boosted', tid, who, 'amount', ARGV[2])
return 1
