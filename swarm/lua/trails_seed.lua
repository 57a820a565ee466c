#!lua
-- trails_seed: start a new swarm's trails from the long-lived ones (read by the caller from
-- swarm:trails, another slot on a cluster), each decayed to now. Fields already there (an
-- outcome that came first) are added to, not replaced.
-- KEYS: the standard eight (_lib.lua); uses meta and the swarm's trails
-- ARGV[1] = now (ms), ARGV[2] = half-life of the long-lived trails (ms)
-- ARGV[3 ..] = field, 'successes|failures|seconds|tokens|stamp', ...
-- Returns the number of trails seeded (0 when the swarm does not learn).
local now, half_life = tonumber(ARGV[1]), tonumber(ARGV[2])
if not learning() then return 0 end
local n = 0
for i = 3, #ARGV - 1, 2 do
  local v, stamp = trail_parse(ARGV[i + 1])
  v = trail_decay(v, stamp, now, half_life)
  trail_add(TRAILS, ARGV[i], now, 0, v)
  n = n + 1
end
return n
