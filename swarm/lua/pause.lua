#!lua
-- pause: workers finish what they hold and claim nothing new.
-- KEYS: the standard eight, then requests and requests:until (_lib.lua); uses meta, events
-- ARGV[1] = who, ARGV[2] = now (ms), ARGV[3] = request id (a resent request is not applied again)
-- Returns 1, or 0 when the swarm is not running or wrapping up.
local who, now, rid = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if replayed(rid) then return 1 end
local state = redis.call('HGET', META, 'state')
if state ~= 'running' and state ~= 'wrapping' then return 0 end
redis.call('HSET', META, 'state', 'paused', 'paused_from', state)
emit(now, 'paused', '', who)
remember(rid, now, '1')
return 1
