#!lua
-- trails_fold: fold a swarm's new outcomes into the long-lived trails, which outlive every
-- swarm: each trail decays to now and takes the new counts; past `max` trails, the weakest
-- (fewest decayed outcomes) go, so the hash stays bounded.
-- KEYS[1] = swarm:trails (hash, the same fields as a swarm's trails; a single key, because
--           on a cluster it lives in another slot than any swarm)
-- ARGV[1] = now (ms), ARGV[2] = half-life (ms), ARGV[3] = max trails kept
-- ARGV[4 ..] = field, 'successes|failures|seconds|tokens|stamp', ... (from trails_take)
-- Returns the number of trails kept.
local now, half_life, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local store = KEYS[1]
for i = 4, #ARGV - 1, 2 do
  trail_add(store, ARGV[i], now, half_life, (trail_parse(ARGV[i + 1])))
end
local n = redis.call('HLEN', store)
if n <= keep then return n end
-- Over the bound: drop the weakest down to 90% of it (amortised: a fold rarely gets here).
local flat = redis.call('HGETALL', store)
local weights = {}
for i = 1, #flat, 2 do
  local v, stamp = trail_parse(flat[i + 1])
  v = trail_decay(v, stamp, now, half_life)
  weights[#weights + 1] = {flat[i], v[1] + v[2]}
end
table.sort(weights, function(a, b) return a[2] < b[2] end)
local drop = n - math.floor(keep * 0.9)
for j = 1, drop do redis.call('HDEL', store, weights[j][1]) end
return n - drop
