#!lua
-- claim: reap expired leases, then pick one open task by the ant-colony rule and lease it.
-- KEYS: the standard eight (_lib.lua): meta, open, traits, leases, fence, events, task:, children:
-- ARGV[1] = worker id
-- ARGV[2] = now (ms)
-- ARGV[3] = lease (ms)
-- ARGV[4] = r_explore  uniform [0,1): below epsilon, pick uniformly from all of open
-- ARGV[5] = r_pick     uniform [0,1): the roulette draw among the top K candidates
-- ARGV[6] = r_index    uniform [0,1): the index drawn when exploring
-- ARGV[7] = skills     comma-separated tags the worker is good at ('' for none)
-- ARGV[8] = reap limit (expired leases handled per call, so a claim stays O(log n + K))
-- Returns a status, then name/value pairs (decoded by name, swarm/board.py `named`):
--   {'ok', 'id', tid, 'fence', fence, 'task', {the task hash, flat},
--    'swarm', {state, tasks, max_tasks, max_depth, max_children: flat name/value pairs},
--    'context', read_context(tid)}  (the context, so thinking needs no further round trip)
--   | {'paused'} | {'closed', 'state', swarm state} | {'empty', 'held', n_claimed}
local worker, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local r_explore, r_pick, r_index = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local reap_limit = tonumber(ARGV[8])

local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NOSWARM no such swarm') end
if state == 'done' or state == 'cancelled' then return {'closed', 'state', state} end

local function reap()
  local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, reap_limit)
  for _, tid in ipairs(expired) do
    local owner = redis.call('HGET', TASK .. tid, 'owner')
    local outcome = retry_or_die(tid, now, 'lease expired (worker ' .. owner .. ' gone)')
    redis.call('HINCRBY', META, 'reaps', 1)  -- a counter for /metrics
    emit(now, 'reaped', tid, worker, 'owner', owner, 'outcome', outcome)
    if outcome == 'dead' then settle(tid, now, worker) end
  end
end

-- Once a budget is spent, plain work is cancelled from the top of open, a bounded number
-- per call, so waiting parents become synthesis tasks and the root still gets an answer.
local function sweep(k)
  local swept = 0
  while swept < reap_limit * 8 do
    local top = redis.call('ZREVRANGE', OPEN, 0, k - 1)
    if #top == 0 then return end
    local cut = false
    for _, tid in ipairs(top) do
      local traits = traits_of(redis.call('HGET', TRAITS, tid), now)
      if traits.kind == 'work' and traits.depth > 0 then
        cancel_one(tid, now)
        redis.call('HSET', TASK .. tid, 'reason', 'budget spent')
        emit(now, 'cancelled', tid, worker, 'reason', 'budget spent')
        settle(tid, now, worker)
        swept = swept + 1
        cut = true
      end
    end
    if not cut then return end
  end
end

local function tag_matches(tags, skills)
  if skills == '' or tags == '' then return 0 end
  local n = 0
  for tag in string.gmatch(tags, '[^,]+') do
    if string.find(',' .. skills .. ',', ',' .. tag .. ',', 1, true) then n = n + 1 end
  end
  return n
end

-- eta: the heuristic desirability of a task, apart from its pheromone.
local function eta(packed)
  local t = traits_of(packed, now)
  local e = 1 + math.max(t.priority, 0) + tag_matches(t.tags, ARGV[7])
  if t.kind == 'synthesize' then e = e + meta_num('synth_bonus') end
  return e + math.min((now - t.created) / 600000, 1)
end

local function pick(k)
  local n = redis.call('ZCARD', OPEN)
  if n == 0 then return nil end
  if state ~= 'wrapping' and r_explore < meta_num('epsilon') then
    local idx = math.min(math.floor(r_index * n), n - 1)
    return redis.call('ZRANGE', OPEN, idx, idx)[1]
  end
  local top = redis.call('ZREVRANGE', OPEN, 0, k - 1, 'WITHSCORES')
  local ids, logw = {}, {}
  local alpha, beta, offset = meta_num('alpha'), meta_num('beta'), decay_offset(now)
  for i = 1, #top, 2 do ids[#ids + 1] = top[i] end
  local packed = redis.call('HMGET', TRAITS, unpack(ids))
  local best = -math.huge
  for j = 1, #ids do
    logw[j] = alpha * (tonumber(top[2 * j]) - offset) + beta * math.log(eta(packed[j]))
    if logw[j] > best then best = logw[j] end
  end
  local total, weights = 0, {}
  for j = 1, #ids do
    weights[j] = math.exp(logw[j] - best)
    total = total + weights[j]
  end
  local target, acc = r_pick * total, 0
  for j = 1, #ids do
    acc = acc + weights[j]
    if target < acc then return ids[j] end
  end
  return ids[#ids]
end

reap()
if state == 'running' then check_budgets(now, worker) end
state = redis.call('HGET', META, 'state')
if state == 'done' or state == 'cancelled' then return {'closed', 'state', state} end
if state == 'paused' then return {'paused'} end

local k = meta_num('candidates')
if state == 'wrapping' then sweep(k) end
state = redis.call('HGET', META, 'state')
if state == 'done' or state == 'cancelled' then return {'closed', 'state', state} end

local tid = pick(k)
if not tid then return {'empty', 'held', redis.call('ZCARD', LEASES)} end

local score = take_open(tid)
local fence = redis.call('INCR', FENCE)
move(tid, 'open', 'claimed', now)
redis.call('HSET', TASK .. tid, 'owner', worker, 'fence', fence, 'score', score)
redis.call('ZADD', LEASES, now + lease, tid)
emit(now, 'claimed', tid, worker, 'fence', fence)
return {'ok', 'id', tid, 'fence', tostring(fence), 'task', redis.call('HGETALL', TASK .. tid),
  'swarm', named(META, {'state', 'tasks', 'max_tasks', 'max_depth', 'max_children'}),
  'context', read_context(tid)}
