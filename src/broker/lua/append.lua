-- Shared by the publish scripts (prepended after epoch.lua): one event, from the session
-- check to the idempotency record. `state_ttl` '0' skips the session check; `refresh`
-- slides the TTLs (the caller asks once per session and window, the TTLs carrying the
-- window as slack), otherwise the session is only checked. `idem` is the idempotency key
-- (nil: none). `new_epoch()` names a history that has none (called only then).
-- Returns 1, `<seq> <epoch> <id>` (published); 0, the earlier result (duplicate);
-- -1, '' (the session is not live, nothing published).
local function append(meta, events, state, idem, channel, pub, state_ttl, refresh,
                      new_epoch, maxlen, ttl, head, tail, id, idem_ttl)
  if state_ttl ~= '0' then
    local live
    if refresh then
      live = redis.call('PEXPIRE', state, state_ttl)
    else
      live = redis.call('EXISTS', state)
    end
    if live == 0 then return -1, '' end
  end
  if idem then
    local prev = redis.call('GET', idem)
    if prev then return 0, prev end
  end
  local epoch = redis.call('HGET', meta, 'epoch')
    or current_epoch(meta, events, channel, new_epoch(), pub)
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
  if idem then redis.call('SET', idem, result, 'PX', idem_ttl) end
  return 1, result
end
