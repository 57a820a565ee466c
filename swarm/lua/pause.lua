-- pause: workers finish what they hold and claim nothing new.
-- KEYS: the standard eight (_lib.lua); uses meta, events
-- ARGV[1] = who, ARGV[2] = now (ms)
-- Returns 1, or 0 when the swarm is not running or wrapping up.
local who, now = ARGV[1], tonumber(ARGV[2])
local state = redis.call('HGET', META, 'state')
if state ~= 'running' and state ~= 'wrapping' then return 0 end
redis.call('HSET', META, 'state', 'paused', 'paused_from', state)
emit(now, 'paused', '', who)
return 1
