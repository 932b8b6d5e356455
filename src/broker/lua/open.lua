local meta, events = KEYS[1], KEYS[2]
local channel, ttl, fresh_epoch, pub = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local epoch = current_epoch(meta, events, channel, fresh_epoch, pub)
redis.call('PEXPIRE', meta, ttl)
return {epoch, redis.call('HGET', meta, 'seq')}
