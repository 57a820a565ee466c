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
-- ARGV[9] = worker class ('' for none: no trails read, no escalation; section 6a)
-- ARGV[10] = worker strength (integer; absent: 0), ARGV[11] = '1' if it can run code: the
--            worker never takes a task whose min_strength or needs_code it does not meet
-- Returns a status, then name/value pairs (decoded by name, swarm/board.py `named`):
--   {'ok', 'id', tid, 'fence', fence, 'task', {the task hash, flat},
--    'swarm', {state, tasks, max_tasks, max_depth, max_children: flat name/value pairs},
--    'context', read_context(tid)}  (the context, so thinking needs no further round trip)
--   | {'paused'} | {'closed', 'state', swarm state} | {'empty', 'held', n_claimed}
--   | {'declined', 'id', tid}: the worker's class leaves the task it drew to a class that
--     does it better (response threshold), or every candidate failed on its class while a
--     live class has not tried them (escalation), or the worker meets the requirements of
--     none of them; nothing was claimed (a candidate no live worker meets may be marked
--     unmet, or die once it has been unmet for unmet_s)
local worker, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local r_explore, r_pick, r_index = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local reap_limit = tonumber(ARGV[8])
local class = ARGV[9] or ''
local strength, code = tonumber(ARGV[10]) or 0, ARGV[11] == '1'

local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NOSWARM no such swarm') end
if state == 'done' or state == 'cancelled' then return {'closed', 'state', state} end

local function reap()
  local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, reap_limit)
  for _, tid in ipairs(expired) do
    local owner = redis.call('HGET', TASK .. tid, 'owner')
    local outcome = retry_or_die(tid, now, 'lease expired (worker ' .. owner .. ' gone)')
    redis.call('HINCRBY', META, 'reaps', 1)  -- a counter for /metrics
    emit(now, 'reaped', tid, worker, 'owner', owner, 'outcome', outcome,
      'class', redis.call('HGET', TASK .. tid, 'owner_class') or '')
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

-- eta: the heuristic desirability of a task (its traits, traits_of), apart from its pheromone.
local function eta(t)
  local e = 1 + math.max(t.priority, 0) + tag_matches(t.tags, ARGV[7])
  if t.kind == 'synthesize' then e = e + meta_num('synth_bonus') end
  return e + math.min((now - t.created) / 600000, 1)
end

-- Division of labour (section 6a), for a worker with a class in a swarm that learns.
local gamma = class ~= '' and meta_num('learning', 0) or 0  -- one HGET, only with a class
local labour = gamma > 0
local live, info = nil, nil  -- classes, read at most once, only when escalation needs them

local function live_now()
  if not live then live, info = read_classes(now) end
  return live
end

-- A live class that has not tried the task, meets its requirements and is stronger than
-- `above`.
local function untried_live(failed_by, t, above)
  local classes = live_now()  -- fills `info` too
  return #untried(failed_by, t, classes, info, above) > 0
end

-- A class that failed this task leaves it while a live class that may do it has not tried
-- it. A class that has not tried it leaves it to a stronger untried class when those that
-- failed it were at least as strong as this worker (escalation goes up first).
local function steered_away(failed_by, t)
  if not failed_by then return false end
  if listed(failed_by, class) then return untried_live(failed_by, t, -math.huge) end
  live_now()
  local failed_strength = 0
  for c in string.gmatch(failed_by, '[^,]+') do
    failed_strength = math.max(failed_strength, info[c] and info[c].strength or 0)
  end
  return strength <= failed_strength and untried_live(failed_by, t, failed_strength)
end

-- Candidates this worker cannot meet: each one that no live worker meets is marked unmet
-- (an 'unmet' event, once), and dies with the reason once it has been unmet for unmet_s, so
-- that work nobody can do neither holds the top of open nor keeps the swarm from its
-- answer. One HMGET of the unmet marks and one HGETALL of the (few) live profiles.
-- What a task needs, as swarm/requirements.py `describe` says it.
local function needs_of(t)
  local parts = {}
  if t.min_strength > 0 then parts[#parts + 1] = 'strength >= ' .. t.min_strength end
  if t.needs_code then parts[#parts + 1] = 'code' end
  return table.concat(parts, ', ')
end

local settled = false  -- whether note_unmet settled a task (it may have ended the swarm)

local function note_unmet(unfit)
  if #unfit == 0 then return end
  local ids = {}
  for i, u in ipairs(unfit) do ids[i] = u.id end
  local since = redis.call('HMGET', UNMET, unpack(ids))
  local profiles = live_profiles(now)
  local wait_ms = meta_num('unmet_s') * 1000
  for i, u in ipairs(unfit) do
    local t, needs = u.t, needs_of(u.t)
    if someone_meets(t, profiles) then
      if since[i] then redis.call('HDEL', UNMET, u.id) end
    elseif not since[i] then
      redis.call('HSET', UNMET, u.id, now)
      emit(now, 'unmet', u.id, worker, 'needs', needs, 'outcome', 'waiting')
    elseif now - (tonumber(since[i]) or now) >= wait_ms then
      take_open(u.id)
      move(u.id, 'open', 'dead', now)
      redis.call('HSET', TASK .. u.id, 'reason', 'no live worker meets its requirements ('
        .. needs .. ') for ' .. meta_num('unmet_s') .. ' s')
      emit(now, 'unmet', u.id, worker, 'needs', needs, 'outcome', 'dead')
      settle(u.id, now, worker)
      settled = true
    end
  end
end

-- The candidates' response thresholds for this worker's class: the worst of each task's
-- kinds. One HMGET of at most K x max_tags fields.
local function thresholds(kinds)
  local fields, owner = {}, {}
  for j, ks in ipairs(kinds) do
    for _, kind in ipairs(ks) do
      fields[#fields + 1] = class .. '|' .. kind
      owner[#owner + 1] = j
    end
  end
  local theta = {}
  for j = 1, #kinds do theta[j] = 0 end
  if #fields == 0 then return theta end
  local found = redis.call('HMGET', TRAILS, unpack(fields))
  for i = 1, #fields do
    theta[owner[i]] = math.max(theta[owner[i]], trail_theta(found[i]))
  end
  return theta
end

-- Whether another live class has a lower threshold for these kinds: only then may this
-- class leave the task (a swarm of one class never declines work). O(classes x kinds).
local function another_does_better(ks, mine)
  for _, c in ipairs(live_now()) do
    if c ~= class then
      local fields = {}
      for _, kind in ipairs(ks) do fields[#fields + 1] = c .. '|' .. kind end
      local theirs = 0
      for _, packed in ipairs(redis.call('HMGET', TRAILS, unpack(fields))) do
        theirs = math.max(theirs, trail_theta(packed))
      end
      if theirs < mine then return true end
    end
  end
  return false
end

local rule = 'pheromone'
local ESCALATION_BONUS = 4  -- eta added per class that failed a task, for one that has not

-- A fixed draw in [0,1) per (worker, task): a worker that left a task leaves it again on its
-- next claims, until its class's trails or the task's age change the odds (a fresh draw at
-- every poll would hand the task to a worker that keeps polling, whatever its threshold).
local function draw(tid)
  local h, key = 7, worker .. '|' .. tid
  for i = 1, #key do h = (h * 31 + string.byte(key, i)) % 2147483647 end
  for _ = 1, 3 do h = (h * 48271) % 2147483647 end  -- Park-Miller steps spread near keys
  return h / 2147483647
end

-- The worker's class takes the task it drew with probability s^2 / (s^2 + theta^2), and
-- leaves it (a 'declined' reply) only to a live class that does this kind better. A task
-- another class failed and this one has not tried is taken (escalation); one that every
-- live class has failed goes to the best of them.
local function respond(tid, s, ks, theta, failed_by)
  if failed_by and not listed(failed_by, class) then
    rule = 'escalated'
    return tid
  end
  if not failed_by and draw(tid) < s ^ 2 / (s ^ 2 + theta ^ 2) then return tid end
  if another_does_better(ks, theta) then return nil, tid end
  return tid
end

local function pick(k)
  local n = redis.call('ZCARD', OPEN)
  if n == 0 then return nil end
  if state ~= 'wrapping' and r_explore < meta_num('epsilon') then
    local idx = math.min(math.floor(r_index * n), n - 1)
    local tid = redis.call('ZRANGE', OPEN, idx, idx)[1]
    local t = traits_of(redis.call('HGET', TRAITS, tid), now)
    -- one it cannot meet: weigh the top K instead
    if meets(t, strength, code) then
      if not labour then
        rule = 'explore'
        return tid
      end
      local failed_by = redis.call('HGET', FAILED, tid)
      if not steered_away(failed_by, t) then
        rule = 'explore'
        local ks = trail_kinds(t.kind, t.tags)
        return respond(tid, eta(t), ks, thresholds({ks})[1], failed_by)
      end
    end
  end
  local top = redis.call('ZREVRANGE', OPEN, 0, k - 1, 'WITHSCORES')
  local ids, logw = {}, {}
  local alpha, beta, offset = meta_num('alpha'), meta_num('beta'), decay_offset(now)
  for i = 1, #top, 2 do ids[#ids + 1] = top[i] end
  local packed = redis.call('HMGET', TRAITS, unpack(ids))
  local etas, kinds, failed, theta, traits, fit, unfit = {}, {}, {}, {}, {}, {}, {}
  for j = 1, #ids do
    local t = traits_of(packed[j], now)
    traits[j] = t
    etas[j] = eta(t)
    fit[j] = meets(t, strength, code)
    if labour then kinds[j] = trail_kinds(t.kind, t.tags) end
    if not fit[j] then unfit[#unfit + 1] = {id = ids[j], t = t} end
  end
  note_unmet(unfit)
  if labour then
    failed = redis.call('HMGET', FAILED, unpack(ids))
    theta = thresholds(kinds)
    -- Escalation's pull: a task other classes failed is the more urgent for one that has not
    -- tried it (its pheromone was lowered by each failure; this lifts it back).
    for j = 1, #ids do
      if failed[j] and not listed(failed[j], class) then
        local _, n = string.gsub(failed[j], '[^,]+', '')
        etas[j] = etas[j] + ESCALATION_BONUS * n
      end
    end
  end
  local best = -math.huge
  for j = 1, #ids do
    logw[j] = alpha * (tonumber(top[2 * j]) - offset) + beta * math.log(etas[j])
    if not fit[j] then
      logw[j] = -math.huge  -- a requirement this worker does not meet
    elseif labour then
      if steered_away(failed[j], traits[j]) then
        logw[j] = -math.huge
      else
        -- response threshold: s^2 / (s^2 + theta^2), the stimulus s being eta
        logw[j] = logw[j] + gamma * math.log(etas[j] ^ 2 / (etas[j] ^ 2 + theta[j] ^ 2))
      end
    end
    if logw[j] > best then best = logw[j] end
  end
  -- every candidate escalated elsewhere, or beyond this worker
  if best == -math.huge then return nil, ids[1] end
  local total, weights = 0, {}
  for j = 1, #ids do
    weights[j] = math.exp(logw[j] - best)
    total = total + weights[j]
  end
  local target, acc, chosen = r_pick * total, 0, #ids
  for j = 1, #ids do
    acc = acc + weights[j]
    if target < acc then chosen = j break end
  end
  if not labour then return ids[chosen] end
  rule = 'trails'
  return respond(ids[chosen], etas[chosen], kinds[chosen], theta[chosen], failed[chosen])
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

local tid, declined = pick(k)
if settled then  -- an unmet root that died ended the swarm
  state = redis.call('HGET', META, 'state')
  if state == 'done' or state == 'cancelled' then return {'closed', 'state', state} end
end
if declined then return {'declined', 'id', declined} end
if not tid then return {'empty', 'held', redis.call('ZCARD', LEASES)} end

local score = take_open(tid)
local fence = redis.call('INCR', FENCE)
move(tid, 'open', 'claimed', now)
redis.call('HSET', TASK .. tid, 'owner', worker, 'fence', fence, 'score', score,
  'owner_class', class, 'claimed_at', now)
redis.call('ZADD', LEASES, now + lease, tid)
emit(now, 'claimed', tid, worker, 'fence', fence, 'class', class, 'rule', rule)
return {'ok', 'id', tid, 'fence', tostring(fence), 'task', redis.call('HGETALL', TASK .. tid),
  'swarm', named(META, {'state', 'tasks', 'max_tasks', 'max_depth', 'max_children'}),
  'context', read_context(tid)}
