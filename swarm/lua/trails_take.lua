#!lua
-- trails_take: hand over the outcomes not yet folded into the long-lived trails, and forget
-- them, in one step (the caller folds them with trails_fold; swarm/trails.py).
-- KEYS: the standard eight (_lib.lua); uses the swarm's trails:new
-- Returns {field, 'successes|failures|seconds|tokens|stamp', ...} (empty when none)
local flat = redis.call('HGETALL', TRAILS_NEW)
if #flat > 0 then redis.call('DEL', TRAILS_NEW) end
return flat
