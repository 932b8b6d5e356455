-- One publish in a call of its own, keys declared (a Redis Cluster, or batching off).
-- KEYS: meta, events, idempotency key, session state. ARGV: channel, maxlen, history TTL,
-- new epoch, envelope head, envelope tail, event id, use the idempotency key ('1'),
-- idempotency TTL, PUBLISH or SPUBLISH (Cluster: the channel hashes to the keys' slot),
-- state TTL ('0': no session check), refresh ('1').
local fresh = ARGV[4]
local idem = nil
if ARGV[8] == '1' then idem = KEYS[3] end
local flag, result = append(KEYS[1], KEYS[2], KEYS[4], idem, ARGV[1], ARGV[10], ARGV[11],
  ARGV[12] == '1', function() return fresh end, ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7],
  ARGV[9])
return {flag, result}
