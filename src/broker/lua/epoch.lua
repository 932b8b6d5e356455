-- Shared by the scripts that open or publish to a history (prepended to each at load).
-- The history's epoch; when it has none, a new history starts (seq 0, no events) and the
-- subscribers are told `reset <epoch>`.
local function current_epoch(meta, events, channel, fresh_epoch, pub)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = fresh_epoch
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    redis.call('DEL', events)
    redis.call(pub, channel, 'reset ' .. epoch)
  end
  return epoch
end
