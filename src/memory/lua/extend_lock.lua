-- Sets KEYS[1]'s expiry to ARGV[2] ms only if it still holds ARGV[1].
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
