-- The rate-limit decision of usage/limiter.py, atomic in Redis (see that file).
-- KEYS: one hash per check (field = bucket index, value = count), then the
-- lease sorted set when the plan limits concurrency.
-- ARGV: now, number of checks, then per check: quota, index, slots, ttl;
-- then, with a lease: limit, lease id, lease expiry, lease key ttl.
-- Returns {allowed, refused check (1-based, 0 if none), oldest bucket, counts...}.
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local counts = {}
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local quota, index, slots = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local fields = redis.call('HGETALL', KEYS[i])
  local total, oldest, stale = 0, index, {}
  for j = 1, #fields, 2 do
    local bucket = tonumber(fields[j])
    if bucket <= index - slots then
      stale[#stale + 1] = fields[j]
    else
      total = total + tonumber(fields[j + 1])
      if bucket < oldest then oldest = bucket end
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  counts[i] = total
  if total >= quota then
    return {0, i, oldest, unpack(counts)}
  end
end
if #KEYS > n then
  local base = 2 + n * 4
  local leases = KEYS[n + 1]
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  if redis.call('ZCARD', leases) >= tonumber(ARGV[base + 1]) then
    return {0, n + 1, 0, unpack(counts)}
  end
  redis.call('ZADD', leases, ARGV[base + 3], ARGV[base + 2])
  redis.call('EXPIRE', leases, ARGV[base + 4])
end
for i = 1, n do
  local base = 2 + (i - 1) * 4
  redis.call('HINCRBY', KEYS[i], ARGV[base + 2], 1)
  redis.call('EXPIRE', KEYS[i], ARGV[base + 4])
end
return {1, 0, 0, unpack(counts)}
