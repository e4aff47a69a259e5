package wire

import (
	"strconv"

	"crease/bus"
)

// SubscribedRecovered answers a subscribe with `since`: recovered true when every delta
// after the client's position follows (from the match's history), false when the client
// must take the snapshot route.
func SubscribedRecovered(match string, recovered bool) []byte {
	b := make([]byte, 0, 48+len(match))
	b = append(b, `{"type":"subscribed","match":`...)
	b = appendString(b, match)
	b = append(b, `,"recovered":`...)
	b = strconv.AppendBool(b, recovered)
	return append(b, '}')
}

// CatchUpDelta is the delta frame the gateway makes for one connection out of the
// deltas from+1..seq of match: patch (their RFC 7396 composition) applies to any state
// at a seq from `from` to seq-1 of epoch. prio is the highest of the deltas', ts the
// last one's. Its fields are those of a publisher's delta, in the documented order, plus
// `from`.
func CatchUpDelta(match, epoch string, seq, from uint64, prio bus.Prio, ts int64, patch []byte) []byte {
	b := make([]byte, 0, 112+len(match)+len(epoch)+len(patch))
	return AppendCatchUpDelta(b, match, epoch, seq, from, prio, ts, patch)
}

// AppendCatchUpDelta is CatchUpDelta appending to b.
func AppendCatchUpDelta(b []byte, match, epoch string, seq, from uint64, prio bus.Prio, ts int64, patch []byte) []byte {
	b = append(b, `{"type":"delta","match":`...)
	b = appendString(b, match)
	b = append(b, `,"epoch":`...)
	b = appendString(b, epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prio":`...)
	b = appendString(b, prio.String())
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"from":`...)
	b = strconv.AppendUint(b, from, 10)
	b = append(b, `,"patch":`...)
	b = append(b, patch...)
	return append(b, '}')
}
