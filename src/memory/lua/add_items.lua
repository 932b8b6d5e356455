-- KEYS: session hash, messages list, lock key
-- ARGV: session_id, now (unix s), cap, ttl s ('' = none), lock token ('' = no lock), items...
local session, messages, lock = KEYS[1], KEYS[2], KEYS[3]
local token = ARGV[5]
if token ~= '' and redis.call('GET', lock) ~= token then
  return 0
end
if redis.call('HSETNX', session, 'created_at', ARGV[2]) == 1 then
  redis.call('HSET', session, 'session_id', ARGV[1])
end
redis.call('HSET', session, 'updated_at', ARGV[2])
for i = 6, #ARGV do
  redis.call('RPUSH', messages, ARGV[i])
end
redis.call('LTRIM', messages, -tonumber(ARGV[3]), -1)
if ARGV[4] ~= '' then
  redis.call('EXPIRE', session, ARGV[4])
  redis.call('EXPIRE', messages, ARGV[4])
end
return 1
