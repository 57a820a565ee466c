#!lua
-- resume: undo a pause; the swarm goes back to the state it was paused from.
-- KEYS: the standard eight, then requests and requests:until (_lib.lua); uses meta, events
-- ARGV[1] = who, ARGV[2] = now (ms), ARGV[3] = request id (a resent request is not applied again)
-- Returns 1, or 0 when the swarm is not paused.
local who, now, rid = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if replayed(rid) then return 1 end
if redis.call('HGET', META, 'state') ~= 'paused' then return 0 end
redis.call('HSET', META, 'state', redis.call('HGET', META, 'paused_from') or 'running')
emit(now, 'resumed', '', who)
remember(rid, now, '1')
return 1
