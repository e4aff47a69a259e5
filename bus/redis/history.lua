-- crease history read (PROTOCOL.md "Publishing (Redis)"): the deltas of a match after a
-- position, read atomically with the stored seq.
-- KEYS: 1 seq, 2 hist. ARGV: 1 epoch, 2 after (seq).
-- Returns {stored 'EPOCH:SEQ'} alone when the deltas cannot all be given (another epoch,
-- older than the history, or ahead of the store), {stored, frame...} otherwise, and nil
-- for a match with nothing stored.
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
local se, ss = string.match(cur, '^(.*):(%d+)$')
if not ss then return {cur} end
ss = tonumber(ss)
local after = tonumber(ARGV[2])
if se ~= ARGV[1] or after > ss then return {cur} end
if after == ss then return {cur, ''} end
local n = redis.call('LLEN', KEYS[2])
local first = ss - n + 1
if n == 0 or after + 1 < first then return {cur} end
local out = redis.call('LRANGE', KEYS[2], after + 1 - first, -1)
table.insert(out, 1, cur)
table.insert(out, 2, '')
return out
