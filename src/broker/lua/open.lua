local meta, events = KEYS[1], KEYS[2]
local channel, ttl, fresh_epoch, pub = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = fresh_epoch
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
  redis.call('DEL', events)
  redis.call(pub, channel, 'reset ' .. epoch)
end
redis.call('PEXPIRE', meta, ttl)
return {epoch, redis.call('HGET', meta, 'seq')}
