#!lua
-- split: turn a claimed task into a waiting parent of new open subtasks, within budgets.
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms)
-- ARGV[5] = tokens spent on this step, ARGV[6] = reason, ARGV[7] = n (number of children)
-- ARGV[8 + 3i], ARGV[9 + 3i], ARGV[10 + 3i] = title, detail, tags (comma-separated) of child i
-- Returns {'ok', child ids...} | {'lost'} | {'refused', why} (the task stays claimed);
-- a resent split returns the children the first one made and makes no others.
local tid, fence, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local tokens, n = tonumber(ARGV[5]), tonumber(ARGV[7])
if not holds(tid, fence, worker) then
  if posted(tid, fence, worker, 'waiting') then
    return {'ok', unpack(redis.call('LRANGE', CHILDREN .. tid, 0, -1))}
  end
  return {'lost'}
end

local depth = tonumber(redis.call('HGET', TASK .. tid, 'depth'))
local state = redis.call('HGET', META, 'state')
local why = nil
if state ~= 'running' then
  why = 'the swarm is ' .. state .. ': answer instead'
elseif redis.call('HGET', TASK .. tid, 'kind') ~= 'work' then
  why = 'a synthesize step must answer'
elseif depth >= meta_num('max_depth') then
  why = 'max depth reached'
elseif n < 1 or n > meta_num('max_children') then
  why = 'between 1 and ' .. meta_num('max_children') .. ' subtasks allowed'
elseif meta_num('tasks', 0) + n > meta_num('max_tasks') then
  why = 'task budget spent'
end
if why then
  charge_tokens(tid, tokens)
  return {'refused', why}
end

local ids = {}
local score = deposit_score(meta_num('initial'), now)
for i = 0, n - 1 do
  ids[#ids + 1] = new_task({parent = tid, title = ARGV[8 + 3 * i], detail = ARGV[9 + 3 * i],
    tags = ARGV[10 + 3 * i]}, now, score)
end
redis.call('ZREM', LEASES, tid)
move(tid, 'claimed', 'waiting', now)
redis.call('HSET', TASK .. tid, 'reason', ARGV[6])
charge_tokens(tid, tokens)
emit(now, 'split', tid, worker, 'children', table.concat(ids, ','))
check_budgets(now, worker)
return {'ok', unpack(ids, 1, n)}
