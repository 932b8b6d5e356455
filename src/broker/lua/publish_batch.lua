-- Group commit: the steps of append.lua for each event of a batch, in order, in one call.
-- The keys are built here from each event's tag `<prefix>:{S}` (which is also its channel);
-- this script is only used on a single Redis server, where a script may touch any key.
-- ARGV[1..5]: n, maxlen, idempotency TTL (ms), PUBLISH command, 14 hex chars for new epochs.
-- Then 8 per event: tag, history TTL, state TTL ('0': no session check), refresh ('1'),
-- idempotency key ('': none), envelope head, envelope tail, event id.
-- Returns 2 values per event: {1, result} published, {0, result} duplicate, {-1, ''} session
-- not live, {2, message} this event failed (the others of the batch still ran).
local n, maxlen, idem_ttl, pub, fresh = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function one(a, i)
  local tag, key = ARGV[a], ARGV[a + 4]
  local idem = nil
  if key ~= '' then idem = tag .. ':idem:' .. key end
  return append(tag .. ':meta', tag .. ':events', tag .. ':state', idem, tag, pub,
    ARGV[a + 2], ARGV[a + 3] == '1', function() return fresh .. string.format('%02x', i % 256) end,
    maxlen, ARGV[a + 1], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], idem_ttl)
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
