#!lua
-- seed: create a swarm: its meta (purpose, budgets, tuning, counters) and its root task,
-- with the purpose's listed tasks as the root's first open children.
-- KEYS: the standard eight (_lib.lua), then KEYS[9] = swarm:index when the index lives on the
--       same server (not on a Redis Cluster, where it is in another slot): the swarm and its
--       index entry are then written together, or neither is
-- ARGV[1] = now (ms), ARGV[2] = request id (a resent seed finds its swarm and answers 'ok')
-- ARGV[3] = m (number of meta field/value pairs that follow; 'id' among them)
-- ARGV[4 .. 3 + 2m]         = meta field, value, ...
-- then: root title, root detail, n (root tasks), then n times: title, detail, tags
-- Returns 'ok', or an error when the swarm already exists (made by another request).
local now, rid = tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', META) == 1 then
  if redis.call('HGET', META, 'seed_request') == rid then return 'ok' end
  return redis.error_reply('EXISTS swarm already seeded')
end
local m = tonumber(ARGV[3])
local i = 4
for _ = 1, m do
  redis.call('HSET', META, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', META, 'seed_request', rid)
if KEYS[9] then redis.call('ZADD', KEYS[9], now, redis.call('HGET', META, 'id')) end
redis.call('HSET', META, 'state', 'running', 'created', now, 'tasks', 0, 'next_id', 0,
  'tokens', 0, 'completions', 0, 'depth_reached', 0, 'n_open', 0, 'n_claimed', 0,
  'n_waiting', 0, 'n_done', 0, 'n_dead', 0, 'n_cancelled', 0)

local title, detail, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
i = i + 3
-- The root waits on the listed tasks, or is open itself when there are none.
local score = deposit_score(meta_num('initial'), now)
-- The purpose's requirements (meta) are the root's; every task under it inherits them.
new_task({id = '0', title = title, detail = detail, state = n > 0 and 'waiting' or 'open',
  min_strength = meta_num('min_strength', 0), needs_code = meta_num('needs_code', 0)}, now, score)
emit(now, 'seeded', '0', 'seed', 'title', title)
for _ = 1, n do
  new_task({parent = '0', title = ARGV[i], detail = ARGV[i + 1], tags = ARGV[i + 2]}, now, score)
  i = i + 3
end
return 'ok'
