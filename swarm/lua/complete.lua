#!lua
-- complete: post a task's answer; a parent whose children are all terminal becomes a
-- synthesize task; the root's answer finishes the swarm.
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms)
-- ARGV[5] = result text, ARGV[6] = confidence (low|medium|high)
-- ARGV[7] = confidence weight (0..1), ARGV[8] = tokens spent on this step
-- ARGV[9] = the check's verdict on a root answer: '' (not checked), pass, fail or error
-- ARGV[10] = what the checker said (bounded by the worker; the feedback of a failed answer)
-- Returns {'ok', swarm state, 'done'|'sent_back'} or {'lost'}; a resent complete returns
-- 'ok' and changes nothing.
-- A root answer whose check failed goes back as a synthesize task with the checker's output
-- as `feedback`, while the swarm runs, its budgets allow and `checks` (answers checked so
-- far) is at most meta `check_retries`; otherwise it is posted like any answer, and meta
-- `check_verdict` says how it fared.
local tid, fence, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local weight, tokens = tonumber(ARGV[7]), tonumber(ARGV[8])
local verdict, said = ARGV[9] or '', ARGV[10] or ''
if not holds(tid, fence, worker) then
  if posted(tid, fence, worker, 'done') then
    return {'ok', redis.call('HGET', META, 'state'), 'done'}
  end
  if redis.call('HGET', TASK .. tid, 'sent_back') == fence .. '|' .. worker then
    return {'ok', redis.call('HGET', META, 'state'), 'sent_back'}
  end
  return {'lost'}
end

local parent = redis.call('HGET', TASK .. tid, 'parent')
if verdict ~= '' and parent == '' then
  local checks = redis.call('HINCRBY', META, 'checks', 1)
  redis.call('HSET', META, 'check_verdict', verdict, 'check_output', said)
  emit(now, 'checked', tid, worker, 'verdict', verdict, 'output', said, 'checks', checks)
  charge_tokens(tid, tokens)
  tokens = 0
  local room = meta_num('tokens', 0) < meta_num('max_tokens')
    and now < meta_num('deadline', math.huge)
  if verdict == 'fail' and checks <= meta_num('check_retries', 0) and room
      and redis.call('HGET', META, 'state') == 'running' then
    redis.call('ZREM', LEASES, tid)
    redis.call('HINCRBY', TASK .. tid, 'rejected', 1)
    redis.call('HSET', TASK .. tid, 'kind', 'synthesize', 'result', ARGV[5],
      'confidence', ARGV[6], 'feedback', said, 'owner', '', 'sent_back', fence .. '|' .. worker)
    move(tid, 'claimed', 'open', now)
    put_open(tid, deposit_score(meta_num('initial'), now))
    emit(now, 'sent_back', tid, worker, 'checks', checks)
    return {'ok', redis.call('HGET', META, 'state'), 'sent_back'}
  end
end

redis.call('ZREM', LEASES, tid)
move(tid, 'claimed', 'done', now)
redis.call('HSET', TASK .. tid, 'result', ARGV[5], 'confidence', ARGV[6], 'owner', worker)
redis.call('HINCRBY', META, 'completions', 1)
charge_tokens(tid, tokens)
trail_outcome(tid, now, true, tokens)
redis.call('HDEL', FAILED, tid)
emit(now, 'completed', tid, worker, 'confidence', ARGV[6], 'tokens', tokens,
  'class', redis.call('HGET', TASK .. tid, 'owner_class') or '')

-- Positive feedback: a good answer makes the rest of its branch more attractive.
local amount = meta_num('q') * weight
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
return {'ok', redis.call('HGET', META, 'state'), 'done'}
