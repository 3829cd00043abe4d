-- The rate-limit decision of usage/limiter.py, atomic in Redis (see that file).
-- KEYS: one hash per check (field = bucket index, value = count; "total" = the
-- sum of the buckets in the window; "first" = the oldest bucket that may still
-- hold calls), then the lease sorted set when the plan limits concurrency.
-- ARGV: now, number of checks, then per check: quota, index, slots, ttl;
-- then, with a lease: limit, lease id, lease expiry, lease key ttl.
-- Returns {allowed, refused check (1-based, 0 if none), oldest bucket, counts...}.
-- A call reads two fields per check, not every bucket: the buckets that left
-- the window since the last call are subtracted from the total and deleted.
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local counts = {}

local function oldest_bucket(key, index)
  local fields, oldest = redis.call('HGETALL', key), index
  for j = 1, #fields, 2 do
    local bucket = tonumber(fields[j])
    if bucket and tonumber(fields[j + 1]) > 0 and bucket < oldest then oldest = bucket end
  end
  return oldest
end

for i = 1, n do
  local base = 2 + (i - 1) * 4
  local quota, index, slots = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local start = index - slots + 1  -- the oldest bucket in the window
  local state = redis.call('HMGET', KEYS[i], 'total', 'first')
  local total, first = tonumber(state[1]), tonumber(state[2])
  if total == nil or first == nil or first < start - slots then
    -- new, written before hashes kept a total (count its buckets still in the window once), or
    -- every bucket it holds has left the window
    local fields, stale = redis.call('HGETALL', KEYS[i]), {}
    total = 0
    for j = 1, #fields, 2 do
      local bucket = tonumber(fields[j])
      if bucket and bucket >= start and first == nil then
        total = total + tonumber(fields[j + 1])
      else
        stale[#stale + 1] = fields[j]
      end
    end
    if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
    redis.call('HSET', KEYS[i], 'total', total, 'first', start)
    redis.call('EXPIRE', KEYS[i], ARGV[base + 4])  -- a refused call must not leave a key for ever
  elseif first < start then
    local stale = {}
    for bucket = first, start - 1 do stale[#stale + 1] = bucket end
    for _, count in ipairs(redis.call('HMGET', KEYS[i], unpack(stale))) do total = total - (tonumber(count) or 0) end
    redis.call('HDEL', KEYS[i], unpack(stale))
    redis.call('HSET', KEYS[i], 'total', total, 'first', start)
  end
  counts[i] = total
  if total >= quota then
    return {0, i, oldest_bucket(KEYS[i], index), unpack(counts)}
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
  redis.call('HINCRBY', KEYS[i], 'total', 1)
  redis.call('EXPIRE', KEYS[i], ARGV[base + 4])
end
return {1, 0, 0, unpack(counts)}
