-- KEYS: lease, fence counter. ARGV: owner, ttl ms.
-- Takes a free lease with a new fencing token; returns the token, or nil when held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
return fence
