-- resume: undo a pause; the swarm goes back to the state it was paused from.
-- KEYS: the standard eight (_lib.lua); uses meta, events
-- ARGV[1] = who, ARGV[2] = now (ms)
-- Returns 1, or 0 when the swarm is not paused.
local who, now = ARGV[1], tonumber(ARGV[2])
if redis.call('HGET', META, 'state') ~= 'paused' then return 0 end
redis.call('HSET', META, 'state', redis.call('HGET', META, 'paused_from') or 'running')
emit(now, 'resumed', '', who)
return 1
