#!lua
-- fail: a step could not be done; the task is retried with lowered pheromone, or dies
-- after max_attempts (a dead child does not block its parent).
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms)
-- ARGV[5] = reason, ARGV[6] = tokens spent on this step
-- Returns {'ok', 'open'|'dead'} or {'lost'}
local tid, fence, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if not holds(tid, fence, worker) then return {'lost'} end
charge_tokens(tid, tonumber(ARGV[6]))
redis.call('HINCRBY', META, 'failures', 1)  -- a counter for /metrics
local outcome = retry_or_die(tid, now, ARGV[5])
emit(now, 'failed', tid, worker, 'reason', ARGV[5], 'outcome', outcome,
  'class', redis.call('HGET', TASK .. tid, 'owner_class') or '')
if outcome == 'dead' then settle(tid, now, worker) end
if redis.call('HGET', META, 'state') == 'running' then check_budgets(now, worker) end
return {'ok', outcome}
