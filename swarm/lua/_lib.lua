-- Shared prelude, prepended to every script when it is registered (swarm/board.py).
--
-- Every script of a swarm takes the same eight KEYS, all under the swarm's hash tag (control
-- writes take two more, see `remember` below; seed may take the index):
--   KEYS[1] = swarm:{id}:meta      hash: purpose, state, budgets, tuning, counters
--   KEYS[2] = swarm:{id}:open      zset: open task ids by forward-decayed log pheromone
--   KEYS[3] = swarm:{id}:traits    hash: open task id -> "kind|priority|depth|created|tags"
--   KEYS[4] = swarm:{id}:leases    zset: claimed task ids by lease deadline (ms)
--   KEYS[5] = swarm:{id}:fence     string: fencing token counter
--   KEYS[6] = swarm:{id}:events    stream: every change (capped)
--   KEYS[7] = swarm:{id}:task:     prefix of task hashes; the task ids a script reaches
--                                 (a picked candidate, a parent, siblings) are only known
--                                 inside the script, so their keys are built from it
--   KEYS[8] = swarm:{id}:children: prefix of child lists, for the same reason
-- Time (ms) and random numbers always come in ARGV; the scripts never read the clock.
-- Ahead of this prelude, swarm/scripts.py puts DEFAULTS: the purpose's default budgets and
-- tuning by meta field name.

local META, OPEN, TRAITS, LEASES, FENCE, EVENTS, TASK, CHILDREN =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

local function fmt(x)
  return string.format('%.17g', x)
end

-- A number from meta; a budget or tuning field that is missing reads as the purpose default
-- (DEFAULTS, written ahead of this prelude from swarm/purpose.py `settings`).
local function meta_num(field, default)
  return tonumber(redis.call('HGET', META, field)) or default or DEFAULTS[field]
end

local function emit(now, etype, tid, who, ...)
  local maxlen = meta_num('events_max')
  redis.call('XADD', EVENTS, 'MAXLEN', '~', maxlen, '*',
    'type', etype, 'task', tid, 'worker', who, 'at', now, ...)
end

-- Pheromone (docs/architecture.md section 5): S = ln(tau) + lambda * t, t in seconds since the epoch.
local function decay_offset(now)
  return meta_num('lambda') * (now - meta_num('created', now)) / 1000
end

local function logaddexp(a, b)
  local m = math.max(a, b)
  if m == -math.huge then return m end
  return m + math.log(math.exp(a - m) + math.exp(b - m))
end

local function deposit_score(amount, now)
  return math.log(amount) + decay_offset(now)
end

-- The most pheromone a task may hold (swarm/pheromone.py MAX_LEVEL): any deposit, however
-- large or repeated, leaves a level at most this, so scores and claim weights stay finite.
local MAX_LEVEL = 1e12

-- Deposit on an open task; false when it is not open or the amount is not a positive,
-- finite number (tonumber reads 'nan' and 'inf', and NaN fails every comparison).
local function deposit(tid, amount, now)
  if not amount or not (amount > 0 and amount < math.huge) then return false end
  local s = redis.call('ZSCORE', OPEN, tid)
  if not s then return false end
  local cap = math.log(MAX_LEVEL) + decay_offset(now)
  -- a stored score past the cap (or +inf, written by anyone) counts as the cap
  local current = math.min(tonumber(s), cap)
  local added = deposit_score(math.min(amount, MAX_LEVEL), now)
  redis.call('ZADD', OPEN, fmt(math.min(logaddexp(current, added), cap)), tid)
  return true
end

local function move(tid, from, to, now)
  redis.call('HINCRBY', META, 'n_' .. from, -1)
  redis.call('HINCRBY', META, 'n_' .. to, 1)
  redis.call('HSET', TASK .. tid, 'state', to, 'updated', now)
end

-- The traits of an open task, packed into one string of KEYS[3] so that the claim rule reads
-- every candidate's in one HMGET: "kind|priority|depth|created|min_strength|needs_code|tags"
-- (tags comma-separated, never holding '|'; the two requirements are what a worker must meet
-- to take it, section 6a). Packed by `put_open` and parsed by `traits_of`, nowhere else.
local TRAIT_FIELDS = {'kind', 'priority', 'depth', 'created', 'min_strength', 'needs_code', 'tags'}
local NO_TRAITS = 'work|0|0|0|0|0|'  -- what an open id without traits (written by anyone) counts as

local function put_open(tid, score)
  local t = redis.call('HMGET', TASK .. tid, unpack(TRAIT_FIELDS))
  redis.call('HSET', TRAITS, tid, table.concat({t[1], t[2] or '0', t[3], t[4], t[5] or '0',
    t[6] or '0', t[7] or ''}, '|'))
  redis.call('ZADD', OPEN, fmt(score), tid)
end

-- A packed traits string as a table; what does not parse reads as no kind, priority and
-- depth 0, created `now`, no requirements, no tags (traits are on Redis, so untrusted). A
-- string packed before requirements existed (five fields) reads as requiring nothing.
local function traits_of(packed, now)
  -- `packed` is false when the id has no traits
  packed = packed or NO_TRAITS
  local kind, priority, depth, created, strength, code, tags = string.match(packed,
    '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if not kind then
    kind, priority, depth, created, tags =
      string.match(packed, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  end
  return {kind = kind, priority = tonumber(priority) or 0, depth = tonumber(depth) or 0,
    created = tonumber(created) or now, tags = tags or '',
    min_strength = tonumber(strength) or 0, needs_code = code == '1'}
end

local UNMET = string.sub(META, 1, -5) .. 'unmet'  -- see 'Requirements' below

local function take_open(tid)
  local s = redis.call('ZSCORE', OPEN, tid)
  redis.call('ZREM', OPEN, tid)
  redis.call('HDEL', TRAITS, tid)
  redis.call('HDEL', UNMET, tid)
  return s
end

-- Every task is made here (seed, split, inject): the fields a new task's hash starts with, in
-- this order, and their defaults. `spec` gives parent, title, detail, tags and, when they are
-- not the default, id (else the next one), state, injected_by and the requirements
-- min_strength and needs_code; depth and path follow from the parent, and so do the
-- requirements, as a floor: a child requires at least what its parent does (section 6a). The full list of a task hash's fields is swarm/task.py `Task`: a field a task
-- is born with goes in both; one written later (owner, fence, result...) only in `Task`.
local NEW_TASK_FIELDS = {'parent', 'depth', 'kind', 'path', 'title', 'detail', 'tags', 'state',
  'attempts', 'priority', 'created', 'updated', 'injected_by', 'min_strength', 'needs_code'}

-- Make a task: its hash, its place in its parent's child list and pending count, the swarm's
-- counters (tasks, n_<state>, depth_reached) and, when it is open, its place in the open set
-- with pheromone `score`. Returns its id. Callers check budgets first.
local function new_task(spec, now, score)
  local tid = spec.id or tostring(redis.call('HINCRBY', META, 'next_id', 1))
  local parent = spec.parent or ''
  local depth, path, strength, code = 0, '', 0, 0
  if parent ~= '' then
    local p = redis.call('HMGET', TASK .. parent, 'depth', 'path', 'min_strength', 'needs_code')
    depth = (tonumber(p[1]) or 0) + 1
    path = (p[2] == false or p[2] == '') and parent or (p[2] .. ',' .. parent)
    strength, code = tonumber(p[3]) or 0, p[4] == '1' and 1 or 0
  end
  local value = {parent = parent, depth = depth, kind = 'work', path = path, title = '',
    detail = '', tags = '', state = 'open', attempts = 0, priority = 0, created = now,
    updated = now}
  for name, v in pairs(spec) do
    if name ~= 'id' then value[name] = v end
  end
  value.min_strength = math.max(strength, tonumber(value.min_strength) or 0)
  value.needs_code = math.max(code, tonumber(value.needs_code) or 0)
  local hash = {}
  for _, name in ipairs(NEW_TASK_FIELDS) do
    if value[name] ~= nil then
      hash[#hash + 1] = name
      hash[#hash + 1] = value[name]
    end
  end
  redis.call('HSET', TASK .. tid, unpack(hash))
  if parent ~= '' then
    redis.call('RPUSH', CHILDREN .. parent, tid)
    redis.call('HINCRBY', TASK .. parent, 'pending', 1)
  end
  redis.call('HINCRBY', META, 'tasks', 1)
  redis.call('HINCRBY', META, 'n_' .. value.state, 1)
  if depth > meta_num('depth_reached', 0) then redis.call('HSET', META, 'depth_reached', depth) end
  if value.state == 'open' then put_open(tid, score) end
  return tid
end

local function finish_swarm(now, outcome, answer, who)
  redis.call('HSET', META, 'state', 'done', 'outcome', outcome, 'answer', answer, 'finished', now)
  emit(now, 'done', '0', who, 'outcome', outcome)
end

local function start_wrapping(now, why, who)
  if redis.call('HGET', META, 'state') ~= 'running' then return end
  redis.call('HSET', META, 'state', 'wrapping', 'wrap_reason', why)
  emit(now, 'wrapping', '', who, 'reason', why)
end

local function check_budgets(now, who)
  if meta_num('tokens', 0) >= meta_num('max_tokens') then
    start_wrapping(now, 'token budget spent', who)
  elseif now >= meta_num('deadline', math.huge) then
    start_wrapping(now, 'deadline passed', who)
  end
end

-- A task just became terminal: its parent may now be ready to synthesise.
local function settle(tid, now, who)
  local t = redis.call('HMGET', TASK .. tid, 'parent', 'state', 'result', 'reason')
  local parent = t[1]
  if parent == '' or parent == false then
    if t[2] == 'done' then
      finish_swarm(now, 'answered', t[3], who)
    elseif t[2] == 'dead' then
      finish_swarm(now, 'failed', t[4] or '', who)
    end
    return
  end
  local pending = redis.call('HINCRBY', TASK .. parent, 'pending', -1)
  if pending <= 0 and redis.call('HGET', TASK .. parent, 'state') == 'waiting' then
    redis.call('HSET', TASK .. parent, 'kind', 'synthesize')
    move(parent, 'waiting', 'open', now)
    put_open(parent, deposit_score(meta_num('initial'), now))
    emit(now, 'synthesis_ready', parent, who)
  end
end

-- Cancel one non-terminal task without telling its parent (callers settle once).
local function cancel_one(tid, now)
  local state = redis.call('HGET', TASK .. tid, 'state')
  if state == 'open' then
    take_open(tid)
  elseif state == 'claimed' then
    redis.call('ZREM', LEASES, tid)
  elseif state ~= 'waiting' then
    return false
  end
  move(tid, state, 'cancelled', now)
  return true
end

-- Fencing: every write after a claim names the fence it was given and who was given it.
-- The owner check also covers a fence counter set back by a crash that lost the last
-- writes of an `appendfsync everysec` AOF: a re-issued number never matches two owners.
local function holds(tid, fence, worker)
  local t = redis.call('HMGET', TASK .. tid, 'state', 'fence', 'owner')
  return t[1] == 'claimed' and t[2] == fence and t[3] == worker
end

-- A resent post (redis-py lost the reply of the first) finds the task already moved to
-- `state` under this fence and owner: it answers as the first did instead of 'lost'.
local function posted(tid, fence, worker, state)
  local t = redis.call('HMGET', TASK .. tid, 'state', 'fence', 'owner')
  return t[1] == state and t[2] == fence and t[3] == worker
end

-- A hash's fields as a flat {name, value, ...} list, absent ones left out: a reply holding
-- one record carries its names, so Python decodes it by name (swarm/board.py `named`).
local function named(key, names)
  local values = redis.call('HMGET', key, unpack(names))
  local out = {}
  for i, name in ipairs(names) do
    if values[i] then
      out[#out + 1] = name
      out[#out + 1] = values[i]
    end
  end
  return out
end

-- A reply holding many records of one kind is a table whose first row names the fields and
-- whose other rows hold each record's values in that order (false where absent): the names
-- travel once, and Python decodes every row by them (swarm/board.py `records`).
local function task_rows(names)
  local header = {unpack(names)}
  header[#header + 1] = 'id'
  return {header}
end

local function task_row(tid, names)
  local row = redis.call('HMGET', TASK .. tid, unpack(names))
  row[#names + 1] = tid
  return row
end

-- What a mind is shown with a task: its ancestors' titles and details, its finished
-- siblings' results and, for a synthesis step, every child's outcome. O(depth + children).
-- Only the task fields a prompt uses are read (a sibling's state first, to keep done ones).
local ANCESTOR_FIELDS = {'title', 'detail'}
local SIBLING_FIELDS = {'state', 'title', 'result', 'confidence'}
local CHILD_FIELDS = {'state', 'title', 'result', 'confidence', 'reason'}

local function read_context(tid)
  local t = redis.call('HMGET', TASK .. tid, 'parent', 'path')
  local parent, path = t[1] or '', t[2] or ''
  local ancestry = task_rows(ANCESTOR_FIELDS)
  local siblings = task_rows(SIBLING_FIELDS)
  local children = task_rows(CHILD_FIELDS)
  for id in string.gmatch(path, '[^,]+') do
    ancestry[#ancestry + 1] = task_row(id, ANCESTOR_FIELDS)
  end
  if parent ~= '' then
    for _, s in ipairs(redis.call('LRANGE', CHILDREN .. parent, 0, -1)) do
      if s ~= tid then
        local row = task_row(s, SIBLING_FIELDS)
        if row[1] == 'done' then siblings[#siblings + 1] = row end  -- row[1]: its state
      end
    end
  end
  for _, c in ipairs(redis.call('LRANGE', CHILDREN .. tid, 0, -1)) do
    children[#children + 1] = task_row(c, CHILD_FIELDS)
  end
  return {'ancestry', ancestry, 'siblings', siblings, 'children', children}
end

-- Division of labour (docs/architecture.md section 6a). Three more keys of the swarm, built
-- from the meta key's name (same hash tag, so the same slot on a cluster), so that every
-- script keeps its eight KEYS:
--   swarm:{id}:trails      hash: '<class>|<kind>' -> 'successes|failures|seconds|tokens|stamp'
--                          (decayed outcome counts of one worker class on one kind of task)
--   swarm:{id}:trails:new  hash: the same fields, outcomes not yet folded into swarm:trails
--   swarm:{id}:failed      hash: task id -> comma-separated classes that failed it
--   swarm:{id}:classes     hash: worker class -> last heartbeat (ms)
local SWARM_PREFIX = string.sub(META, 1, -5)  -- 'swarm:{id}:' ('meta' is 4 characters)
local TRAILS, TRAILS_NEW = SWARM_PREFIX .. 'trails', SWARM_PREFIX .. 'trails:new'
local FAILED, CLASSES = SWARM_PREFIX .. 'failed', SWARM_PREFIX .. 'classes'

-- A trail value; anything unreadable (it is on Redis, so untrusted) counts as no trail.
local function trail_parse(packed)
  local s, f, secs, tokens, stamp = string.match(packed or '',
    '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  local v = {tonumber(s) or 0, tonumber(f) or 0, tonumber(secs) or 0, tonumber(tokens) or 0}
  for i = 1, 4 do
    if not (v[i] >= 0 and v[i] < 1e15) then v[i] = 0 end  -- NaN fails both
  end
  return v, tonumber(stamp) or 0
end

local function trail_pack(v, stamp)
  return table.concat({fmt(v[1]), fmt(v[2]), fmt(v[3]), fmt(v[4]), fmt(stamp)}, '|')
end

-- Decay by the time passed since the trail's stamp (now comes in ARGV); never grows.
local function trail_decay(v, stamp, now, half_life_ms)
  local k = 1
  if now > stamp and half_life_ms > 0 then k = math.exp(-math.log(2) * (now - stamp) / half_life_ms) end
  return {v[1] * k, v[2] * k, v[3] * k, v[4] * k}
end

-- Add an outcome (or a batch of them) to one field of a trails hash, decayed to now.
local function trail_add(hash, field, now, half_life_ms, add)
  local v, stamp = trail_parse(redis.call('HGET', hash, field))
  v = trail_decay(v, stamp, now, half_life_ms)
  for i = 1, 4 do v[i] = v[i] + add[i] end
  redis.call('HSET', hash, field, trail_pack(v, math.max(now, stamp)))
end

-- The kinds of a task its trails are kept under: its tags, or '@work' / '@synthesize'.
local function trail_kinds(kind, tags)
  local found = {}
  for tag in string.gmatch(tags or '', '[^,]+') do found[#found + 1] = tag end
  if #found == 0 then found[1] = '@' .. (kind or 'work') end
  return found
end

-- The response threshold of a class for a kind (Bonabeau, Theraulaz and Deneubourg):
-- 1 with no trail, lowered by successes, raised by failures.
local function trail_theta(packed)
  local v = trail_parse(packed)
  return (v[2] + 1) / (v[1] + 1)
end

local function learning()
  return meta_num('learning', 0) > 0  -- a swarm seeded before classes existed: off
end

-- An outcome of a claimed task: its class's trail for each of its kinds, in the swarm's
-- trails (read by claims) and in trails:new (folded into the long-lived swarm:trails).
local function trail_outcome(tid, now, ok, tokens)
  if not learning() then return end
  local t = redis.call('HMGET', TASK .. tid, 'owner_class', 'kind', 'tags', 'claimed_at')
  local class = t[1]
  if not class or class == '' then return end
  local secs = math.max(0, now - (tonumber(t[4]) or now)) / 1000
  local add = ok and {1, 0, secs, tokens} or {0, 1, 0, 0}
  local hl = meta_num('trail_half_life_s', 604800) * 1000  -- swarm/trails.py HALF_LIFE_S
  for _, kind in ipairs(trail_kinds(t[2], t[3])) do
    trail_add(TRAILS, class .. '|' .. kind, now, hl, add)
    trail_add(TRAILS_NEW, class .. '|' .. kind, now, 0, add)
  end
end

-- Requirements (section 6a): a task may need a minimum strength and code execution, and a
-- worker says what it has. Both hashes are written by heartbeats (swarm/board.py):
--   swarm:{id}:classes   class -> 'beat|strength|code' of its latest worker (a bare beat,
--                        written before strengths existed, reads as strength 0, no code)
--   swarm:{id}:profiles  'strength|code' -> latest beat of a worker with that profile
--   swarm:{id}:unmet     open task id -> when a claim first saw that no live worker meets it
local PROFILES = SWARM_PREFIX .. 'profiles'

local function meets(t, strength, code)
  return strength >= (t.min_strength or 0) and (code or not t.needs_code)
end

-- The oldest beat that is still live: 2.5 heartbeats (swarm/board.py stale_s, with the
-- heartbeat every lease/4 between 0.05 s and 5 s).
local function live_since(now)
  return now - 2.5 * math.max(50, math.min(meta_num('lease_ms') / 4, 5000))
end

-- Every class the swarm has seen: name -> {live, strength, code}, and the live names.
local function read_classes(now)
  local since = live_since(now)
  local flat = redis.call('HGETALL', CLASSES)
  local info, live = {}, {}
  for i = 1, #flat, 2 do
    local beat, strength, code = string.match(flat[i + 1], '^([^|]*)|?([^|]*)|?([^|]*)$')
    local c = {live = (tonumber(beat) or 0) >= since, strength = tonumber(strength) or 0,
      code = code == '1'}
    info[flat[i]] = c
    if c.live then live[#live + 1] = flat[i] end
  end
  return live, info
end

-- What the live workers offer: {strength, code} per profile that beat lately (a few).
local function live_profiles(now)
  local since = live_since(now)
  local flat = redis.call('HGETALL', PROFILES)
  local found = {}
  for i = 1, #flat, 2 do
    if (tonumber(flat[i + 1]) or 0) >= since then
      local strength, code = string.match(flat[i], '^([^|]*)|(.*)$')
      found[#found + 1] = {tonumber(strength) or 0, code == '1'}
    end
  end
  return found
end

local function someone_meets(t, profiles)
  for _, p in ipairs(profiles) do
    if meets(t, p[1], p[2]) then return true end
  end
  return false
end

local function listed(csv, item)
  return string.find(',' .. (csv or '') .. ',', ',' .. item .. ',', 1, true) ~= nil
end

-- Live classes (`live`, `info` from read_classes) that have not failed this task yet, meet
-- its requirements (`t` holds min_strength and needs_code) and, with `above`, are stronger
-- than that: escalation's targets, here and in claim.lua.
local function untried(failed_by, t, live, info, above)
  local found = {}
  for _, class in ipairs(live) do
    local c = info[class]
    if not listed(failed_by, class) and c.strength > (above or -math.huge)
        and meets(t, c.strength, c.code) then
      found[#found + 1] = class
    end
  end
  return found
end

-- A task's requirements from its hash, as traits_of gives them.
local function requirements(tid)
  local r = redis.call('HMGET', TASK .. tid, 'min_strength', 'needs_code')
  return {min_strength = tonumber(r[1]) or 0, needs_code = r[2] == '1'}
end

-- A failure of a classed worker in a swarm that learns: the class joins the task's failed_by.
-- Returns the class, failed_by and the live classes that have not tried the task (nil when
-- none, or when nothing is recorded).
local function escalate(tid, now)
  if not learning() then return nil end
  local class = redis.call('HGET', TASK .. tid, 'owner_class')
  if not class or class == '' then return nil end
  local failed_by = redis.call('HGET', FAILED, tid)
  if not failed_by or failed_by == '' then
    failed_by = class
  elseif not listed(failed_by, class) then
    failed_by = failed_by .. ',' .. class
  end
  redis.call('HSET', FAILED, tid, failed_by)
  redis.call('HSET', TASK .. tid, 'failed_by', failed_by)
  local live, info = read_classes(now)
  local to = untried(failed_by, requirements(tid), live, info)
  if #to == 0 then return class, failed_by, nil end
  return class, failed_by, to
end

-- A failed or expired attempt: retry with lowered pheromone, or give up on the task. In a
-- swarm that learns, the failing class's trails take the failure, and the task is escalated:
-- recorded as failed by that class (claims steer it to the live classes that have not
-- tried it) and kept past max_attempts while such a class lives (bounded: max_attempts
-- more per class that failed it), so it dies only when every live class has failed it.
local function retry_or_die(tid, now, reason)
  redis.call('ZREM', LEASES, tid)
  local attempts = redis.call('HINCRBY', TASK .. tid, 'attempts', 1)
  redis.call('HSET', TASK .. tid, 'owner', '', 'reason', reason)
  trail_outcome(tid, now, false, 0)
  local class, failed_by, to = escalate(tid, now)
  local max_attempts = meta_num('max_attempts')
  local _, n_failed = string.gsub(failed_by or '', '[^,]+', '')
  if attempts >= max_attempts and not (to and attempts < max_attempts * (n_failed + 1)) then
    move(tid, 'claimed', 'dead', now)
    redis.call('HDEL', FAILED, tid)
    return 'dead'
  end
  move(tid, 'claimed', 'open', now)
  local s = tonumber(redis.call('HGET', TASK .. tid, 'score')) or deposit_score(meta_num('initial'), now)
  put_open(tid, s + math.log(meta_num('rho_fail')))
  if to then
    emit(now, 'escalated', tid, class, 'failed_by', failed_by, 'to', table.concat(to, ','),
      'attempts', attempts)
  end
  return 'open'
end

local function charge_tokens(tid, tokens)
  if tokens > 0 then
    redis.call('HINCRBY', META, 'tokens', tokens)
    redis.call('HINCRBY', TASK .. tid, 'tokens', tokens)
  end
end

-- Control writes apply once. redis-py resends a command whose reply it lost (a stall past
-- its socket timeout, a dropped connection), so each control write carries a request id:
-- KEYS[9] = swarm:{id}:requests (hash: request id -> first reply) and KEYS[10] =
-- swarm:{id}:requests:until (zset: request id -> kept until, ms on the swarm's clock). A
-- resent request finds its first reply and changes nothing; ids are kept ten minutes, far
-- past redis-py's retries, and the expired ones are dropped by the next control write.
local REQUEST_KEEP_MS = 600000

local function replayed(rid)
  return redis.call('HGET', KEYS[9], rid)
end

local function remember(rid, now, reply)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', now, 'LIMIT', 0, 64)
  if #expired > 0 then
    redis.call('HDEL', KEYS[9], unpack(expired))
    redis.call('ZREM', KEYS[10], unpack(expired))
  end
  redis.call('HSET', KEYS[9], rid, reply)
  redis.call('ZADD', KEYS[10], now + REQUEST_KEEP_MS, rid)
  return reply
end
