#!lua
-- inject: a person adds a task under a parent that is waiting on its children.
-- KEYS: the standard eight, then requests and requests:until (_lib.lua); uses meta, open,
--       traits, events, task:, children:
-- ARGV[1] = parent task id, ARGV[2] = title, ARGV[3] = detail, ARGV[4] = tags (comma-separated)
-- ARGV[5] = who, ARGV[6] = now (ms), ARGV[7] = min_strength, ARGV[8] = needs_code ('1' or
-- '0'): what its worker must meet (on top of what the parent requires, which it inherits),
-- ARGV[9] = request id (a resent request returns the task it made the first time and makes
-- no other)
-- Returns {'ok', new task id} or {'refused', why}; nothing changes when refused.
--
-- Only a waiting parent takes a new child: its pending count grows by one, so it synthesises
-- once the injected task is terminal too. An open or claimed task has not been split yet
-- (its worker may answer it at any moment), and a synthesising or finished one has already
-- gathered its children, so both are refused with the reason. max_children bounds what a
-- mind may split into, not what a person adds; the task budget binds everyone.
local parent, title, detail, tags = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local who, now = ARGV[5], tonumber(ARGV[6])
local min_strength, needs_code, rid = tonumber(ARGV[7]) or 0, ARGV[8] == '1' and 1 or 0, ARGV[9]

local swarm_state = redis.call('HGET', META, 'state')
if not swarm_state then return redis.error_reply('NOSWARM no such swarm') end
local made = replayed(rid)
if made then return {'ok', made} end
if swarm_state == 'done' or swarm_state == 'cancelled' then
  return {'refused', 'the swarm is ' .. swarm_state}
end
if swarm_state == 'wrapping' then
  local why = redis.call('HGET', META, 'wrap_reason') or 'a budget is spent'
  return {'refused', 'the swarm is wrapping up (' .. why .. '): it takes no new work'}
end

local p = redis.call('HMGET', TASK .. parent, 'state', 'kind')
local pstate = p[1]
if not pstate then return {'refused', 'no task ' .. parent} end
if pstate ~= 'waiting' then
  if parent == '0' and (pstate == 'open' or pstate == 'claimed') and p[2] == 'work' then
    return {'refused', 'the root has not been split yet; boost it or wait'}
  elseif p[2] == 'synthesize' and (pstate == 'open' or pstate == 'claimed') then
    return {'refused', 'task ' .. parent .. ' is already synthesising its children'}
  elseif pstate == 'open' or pstate == 'claimed' then
    return {'refused', 'task ' .. parent .. ' is ' .. pstate .. ', not split into subtasks;'
      .. ' inject under a waiting task (its parent, or the root)'}
  end
  return {'refused', 'task ' .. parent .. ' is ' .. pstate}
end

local tasks, max_tasks = meta_num('tasks', 0), meta_num('max_tasks')
if tasks + 1 > max_tasks then
  return {'refused', 'task budget spent (' .. tasks .. ' of ' .. max_tasks .. ')'}
end

local child = new_task({parent = parent, title = title, detail = detail, tags = tags,
  injected_by = who, min_strength = min_strength, needs_code = needs_code}, now,
  deposit_score(meta_num('initial'), now))
emit(now, 'injected', child, who, 'parent', parent, 'title', title)
remember(rid, now, child)
return {'ok', child}
