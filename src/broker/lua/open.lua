local meta, events = KEYS[1], KEYS[2]
local channel, ttl, fresh_epoch = ARGV[1], ARGV[2], ARGV[3]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = fresh_epoch
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
  redis.call('DEL', events)
  redis.call('PUBLISH', channel, 'reset ' .. epoch)
end
redis.call('PEXPIRE', meta, ttl)
return {epoch, redis.call('HGET', meta, 'seq')}
