-- crease resume read: the snapshot and the publisher's journal of a match, atomically.
-- KEYS: 1 snap, 2 journal. Returns {snapshot, entry...}, or nil when nothing is stored.
local snap = redis.call('GET', KEYS[1])
if not snap then return nil end
local out = redis.call('LRANGE', KEYS[2], 0, -1)
table.insert(out, 1, snap)
return out
