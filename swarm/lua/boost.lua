#!lua
-- boost: a person deposits pheromone on an open task so the swarm takes it sooner.
-- KEYS: the standard eight, then requests and requests:until (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = amount (> 0), ARGV[3] = who, ARGV[4] = now (ms)
-- ARGV[5] = request id (a resent request is not applied again)
-- Returns 1, or 0 when the task is not open.
local tid, amount, who, now, rid = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
if replayed(rid) then return 1 end
if not deposit(tid, amount, now) then return 0 end
emit(now, 'boosted', tid, who, 'amount', ARGV[2])
remember(rid, now, '1')
return 1
