#!lua flags=allow-oom
-- release: give a claimed task back untouched (a worker shutting down); no attempt is spent.
-- KEYS: the standard eight (_lib.lua)
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms)
-- Returns 1, or 0 when the lease was already lost.
local tid, fence, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if not holds(tid, fence, worker) then return 0 end
redis.call('ZREM', LEASES, tid)
redis.call('HSET', TASK .. tid, 'owner', '')
move(tid, 'claimed', 'open', now)
local s = tonumber(redis.call('HGET', TASK .. tid, 'score')) or deposit_score(meta_num('initial'), now)
put_open(tid, s)
emit(now, 'released', tid, worker)
return 1
