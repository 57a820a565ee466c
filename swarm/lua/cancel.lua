#!lua
-- cancel: a person stops a task and everything under it, or the whole swarm.
-- KEYS: the standard eight, then requests and requests:until (_lib.lua)
-- ARGV[1] = task id ('' for the whole swarm), ARGV[2] = who, ARGV[3] = now (ms)
-- ARGV[4] = reason, ARGV[5] = most tasks visited (bounds the walk of a huge subtree)
-- ARGV[6] = request id (a resent request is not applied again: it returns its first count)
-- Returns the number of tasks cancelled, or -1 when the task does not exist.
local tid, who, now, limit, rid = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[6]
local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NOSWARM no such swarm') end
local first = replayed(rid)
if first then return tonumber(first) end
if tid == '' or tid == '0' then
  if state == 'done' or state == 'cancelled' then return 0 end
  redis.call('HSET', META, 'state', 'cancelled', 'outcome', 'cancelled', 'finished', now)
  emit(now, 'cancelled', '', who, 'reason', ARGV[4])
  remember(rid, now, '1')
  return 1
end
if redis.call('EXISTS', TASK .. tid) == 0 then return -1 end
local count, stack, visited = 0, {tid}, 0
while #stack > 0 and visited < limit do
  local t = table.remove(stack)
  visited = visited + 1
  if cancel_one(t, now) then
    count = count + 1
    redis.call('HSET', TASK .. t, 'reason', ARGV[4])
    for _, c in ipairs(redis.call('LRANGE', CHILDREN .. t, 0, -1)) do stack[#stack + 1] = c end
  end
end
if count > 0 then
  emit(now, 'cancelled', tid, who, 'reason', ARGV[4], 'count', count)
  settle(tid, now, who)
  remember(rid, now, tostring(count))
end
return count
