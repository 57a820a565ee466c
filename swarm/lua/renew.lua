#!lua flags=allow-oom
-- renew: extend the lease of a task this worker still holds.
-- KEYS: the standard eight (_lib.lua); uses meta, leases, events, task:
-- ARGV[1] = task id, ARGV[2] = fence, ARGV[3] = worker id, ARGV[4] = now (ms), ARGV[5] = lease (ms)
-- Returns 1, or 0 when the lease was lost (the caller must drop its work).
local tid, fence, worker, now, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if not holds(tid, fence, worker) then return 0 end
redis.call('ZADD', LEASES, now + lease, tid)
emit(now, 'renewed', tid, worker)
return 1
