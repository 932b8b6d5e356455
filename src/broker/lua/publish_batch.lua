-- Group commit: the steps of publish.lua for each event of a batch, in order, in one call.
-- The keys are built here from each event's tag `<prefix>:{S}` (which is also its channel);
-- this script is only used on a single Redis server, where a script may touch any key.
-- ARGV[1..5]: n, maxlen, idempotency TTL (ms), PUBLISH command, 14 hex chars for new epochs.
-- Then 8 per event: tag, history TTL, state TTL ('0': no session check), refresh ('1'),
-- idempotency key ('': none), envelope head, envelope tail, event id.
-- Returns 2 values per event: {1, result} published, {0, result} duplicate, {-1, ''} session
-- not live, {2, message} this event failed (the others of the batch still ran).
local n, maxlen, idem_ttl, pub, fresh = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function one(a, i)
  local tag, ttl, state_ttl, refresh = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3] == '1'
  local key, head, tail, id = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  if state_ttl ~= '0' then
    local live
    if refresh then
      live = redis.call('PEXPIRE', tag .. ':state', state_ttl)
    else
      live = redis.call('EXISTS', tag .. ':state')
    end
    if live == 0 then return -1, '' end
  end
  local idem
  if key ~= '' then
    idem = tag .. ':idem:' .. key
    local prev = redis.call('GET', idem)
    if prev then return 0, prev end
  end
  local meta, events = tag .. ':meta', tag .. ':events'
  -- (The new epoch's string is built only for a history that has none.)
  local epoch = redis.call('HGET', meta, 'epoch')
    or current_epoch(meta, events, tag, fresh .. string.format('%02x', i % 256), pub)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local env = head .. seq .. ',"epoch":"' .. epoch .. '"' .. tail
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, seq .. '-0', 'e', env)
  if refresh or seq == 1 then
    redis.call('PEXPIRE', meta, ttl)
    redis.call('PEXPIRE', events, ttl)
  end
  redis.call(pub, tag, seq .. ' ' .. env)
  local result = seq .. ' ' .. epoch .. ' ' .. id
  if idem then redis.call('SET', idem, result, 'PX', idem_ttl) end
  return 1, result
end

local out = {}
for i = 0, n - 1 do
  local ok, flag, result = pcall(one, 6 + i * 8, i)
  if not ok then
    local e = flag
    if type(e) == 'table' then e = e.err or e.message end
    flag, result = 2, tostring(e)
  end
  out[2 * i + 1] = flag
  out[2 * i + 2] = result
end
return out
