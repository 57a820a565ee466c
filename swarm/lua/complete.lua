#!lua
-- complete: post a task's answer; a parent whose children are all terminal becomes a
-- synthesize task; the root's answer finishes the swarm.
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms)
-- ARGV[5] = result text, ARGV[6] = confidence (low|medium|high)
-- ARGV[7] = confidence weight (0..1), ARGV[8] = tokens spent on this step
-- Returns {'ok', swarm state} or {'lost'}; a resent complete returns 'ok' and changes nothing.
local tid, fence, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local weight, tokens = tonumber(ARGV[7]), tonumber(ARGV[8])
if not holds(tid, fence, worker) then
  if posted(tid, fence, worker, 'done') then return {'ok', redis.call('HGET', META, 'state')} end
  return {'lost'}
end

redis.call('ZREM', LEASES, tid)
move(tid, 'claimed', 'done', now)
redis.call('HSET', TASK .. tid, 'result', ARGV[5], 'confidence', ARGV[6], 'owner', worker)
redis.call('HINCRBY', META, 'completions', 1)
charge_tokens(tid, tokens)
emit(now, 'completed', tid, worker, 'confidence', ARGV[6], 'tokens', tokens)

-- Positive feedback: a good answer makes the rest of its branch more attractive.
local amount = meta_num('q') * weight
local parent = redis.call('HGET', TASK .. tid, 'parent')
if parent ~= '' and amount > 0 then
  for _, sib in ipairs(redis.call('LRANGE', CHILDREN .. parent, 0, -1)) do
    if sib ~= tid and not deposit(sib, amount, now) then
      for _, nephew in ipairs(redis.call('LRANGE', CHILDREN .. sib, 0, -1)) do
        deposit(nephew, amount, now)
      end
    end
  end
end

settle(tid, now, worker)
if redis.call('HGET', META, 'state') == 'running' then check_budgets(now, worker) end
return {'ok', redis.call('HGET', META, 'state')}
