local meta, events = KEYS[1], KEYS[2]
local after = ARGV[1]
local m = redis.call('HMGET', meta, 'epoch', 'seq')
if not m[1] then return {} end
local out = {m[1], m[2]}
local first = redis.call('XRANGE', events, '-', '+', 'COUNT', 1)
if first[1] then
  table.insert(out, string.match(first[1][1], '^(%d+)'))
else
  table.insert(out, '0')
end
if after ~= 'none' then
  local r = redis.call('XRANGE', events, '(' .. after .. '-0', '+')
  for _, e in ipairs(r) do
    table.insert(out, string.match(e[1], '^(%d+)'))
    table.insert(out, e[2][2])
  end
end
return out
