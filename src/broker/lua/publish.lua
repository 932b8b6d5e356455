local meta, events, idem = KEYS[1], KEYS[2], KEYS[3]
local channel, maxlen, ttl, fresh_epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local head, tail, id, use_idem, idem_ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
-- PUBLISH, or SPUBLISH on a Redis Cluster (the channel hashes to the keys' slot).
local pub = ARGV[10]
-- ARGV[12] = '1': refresh the TTLs. The caller asks for it once per session and window
-- (the TTLs it passes carry the window as slack); the other publishes only check.
local refresh = ARGV[12] == '1'
-- With a session TTL, publish only while the session's state exists (KEYS[4]), sliding its
-- TTL when refreshing: the session check and the publish in one step.
if ARGV[11] ~= '0' then
  local live
  if refresh then
    live = redis.call('PEXPIRE', KEYS[4], ARGV[11])
  else
    live = redis.call('EXISTS', KEYS[4])
  end
  if live == 0 then return {-1, ''} end
end
if use_idem == '1' then
  local prev = redis.call('GET', idem)
  if prev then return {0, prev} end
end
local epoch = current_epoch(meta, events, channel, fresh_epoch, pub)
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local env = head .. seq .. ',"epoch":"' .. epoch .. '"' .. tail
redis.call('XADD', events, 'MAXLEN', '~', maxlen, seq .. '-0', 'e', env)
-- seq 1: the history was just created here, so it has no TTL yet.
if refresh or seq == 1 then
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', events, ttl)
end
redis.call(pub, channel, seq .. ' ' .. env)
local result = seq .. ' ' .. epoch .. ' ' .. id
if use_idem == '1' then redis.call('SET', idem, result, 'PX', idem_ttl) end
return {1, result}
