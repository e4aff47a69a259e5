-- crease publish script (PROTOCOL.md "Publishing (Redis)"): stores the snapshot, the
-- seq, the title, the history and the publisher's journal of one match, and publishes
-- its delta frame, in one atomic step. Any publisher may run it (EVAL / EVALSHA).
--
-- KEYS: 1 seq, 2 snap, 3 info, 4 hist, 5 journal (crease:{ID}:seq ... all one slot)
-- ARGV: 1 epoch, 2 seq, 3 snapshot JSON, 4 title ('' keeps it), 5 channel, 6 frame,
--       7 publish command (PUBLISH or SPUBLISH), 8 retry ('1' when an earlier attempt's
--       outcome is unknown), 9 history max deltas, 10 history max age (ms),
--       11 history max bytes, 12 the frame's ts (Unix ms), 13 journal From ('' leaves the
--       journal alone), 14.. the journal entries from From on.
-- Returns the rule applied: 'applied', 'duplicate', 'new_epoch', 'reseeded_empty',
-- 'reseeded_behind'; or the error 'SEQCONFLICT ...' (refused, nothing written), or
-- 'NEEDJOURNAL ...' (the store lacks the journal entries before From: send them all,
-- From 0; nothing written).
local epoch, seq = ARGV[1], tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
local rule
if not cur then
  if seq == 1 then rule = 'new_epoch' else rule = 'reseeded_empty' end
else
  local se, ss = string.match(cur, '^(.*):(%d+)$')
  if not ss then se, ss = '', cur end -- written before epochs existed
  ss = tonumber(ss)
  if se == '' and seq == ss + 1 then
    rule = 'applied'
  elseif se ~= epoch then
    return redis.error_reply('SEQCONFLICT stored ' .. cur .. ', another epoch')
  elseif seq == ss + 1 then
    rule = 'applied'
  elseif seq == ss and ARGV[8] == '1' and redis.call('GET', KEYS[2]) == ARGV[3] then
    return 'duplicate'
  elseif seq > ss + 1 then
    rule = 'reseeded_behind'
  else
    return redis.error_reply('SEQCONFLICT stored ' .. cur .. ', ahead of ' .. seq)
  end
end
local from = ARGV[13]
if from ~= '' then
  from = tonumber(from)
  if from > 0 and (rule ~= 'applied' or redis.call('LLEN', KEYS[5]) < from) then
    return redis.error_reply('NEEDJOURNAL the store lacks entries before ' .. from)
  end
end

local pos = epoch .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], pos)
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'title', ARGV[4], 'epoch', epoch, 'seq', ARGV[2])
else
  redis.call('HSET', KEYS[3], 'epoch', epoch, 'seq', ARGV[2])
end

-- History: the frames of the stored epoch with contiguous seqs ending at the stored one.
local maxn, maxage, maxbytes = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local bytes = 0
if rule ~= 'applied' then
  redis.call('DEL', KEYS[4])
elseif redis.call('EXISTS', KEYS[4]) == 1 then
  -- (an expired history left its count behind: it starts again from 0)
  bytes = tonumber(redis.call('HGET', KEYS[3], 'hist_bytes') or '0')
end
if maxn > 0 then
  redis.call('RPUSH', KEYS[4], ARGV[6])
  bytes = bytes + #ARGV[6]
  local n = redis.call('LLEN', KEYS[4])
  local oldest = tonumber(ARGV[12]) - maxage
  while n > 0 do
    local drop = n > maxn or bytes > maxbytes
    local head
    if not drop then
      head = redis.call('LINDEX', KEYS[4], 0)
      local ok, f = pcall(cjson.decode, head)
      drop = ok and type(f) == 'table' and type(f.ts) == 'number' and f.ts / 1000 < oldest
    end
    if not drop then break end
    head = redis.call('LPOP', KEYS[4])
    bytes = bytes - #head
    n = n - 1
  end
  if n > 0 then
    redis.call('PEXPIRE', KEYS[4], maxage)
  end
else
  redis.call('DEL', KEYS[4])
  bytes = 0
end
redis.call('HSET', KEYS[3], 'hist_bytes', bytes)

if from ~= '' then
  if from == 0 then
    redis.call('DEL', KEYS[5])
  else
    redis.call('LTRIM', KEYS[5], 0, from - 1)
  end
  local i = 14
  while i <= #ARGV do
    local j = math.min(i + 999, #ARGV)
    redis.call('RPUSH', KEYS[5], unpack(ARGV, i, j))
    i = j + 1
  end
end

redis.call(ARGV[7], ARGV[5], ARGV[6])
return rule
