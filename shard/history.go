package shard

// The shard's side of history replay (PROTOCOL.md `since`): what it asks of the gateway
// and what comes back. The gateway (server) reads the match's history, or answers from
// what it already holds, and posts the answer to the loop's inbox (PostHistory).

// Since is a position a client holds: a subscribe with `since`.
type Since struct {
	Epoch string
	Seq   uint64
}

// HistoryRequest asks for the deltas of Match after Since, for one connection waiting on
// the shard numbered Shard. ID names the request in its answer.
type HistoryRequest struct {
	Shard int
	ID    uint64
	Match string
	Since Since
}

// HistoryAnswer answers a HistoryRequest.
//
// OK: Frames are the deltas Since.Seq+1 .. Last of Since.Epoch, in order (none when Last
// is Since.Seq), read-only and possibly shared with other answers, and the answer was
// made while the gateway's record of the match was current: every delta of the match
// the gateway posted to this loop before the answer is among them (seq ≤ Last), and
// every later one comes after the answer in the inbox. That is what lets a waiting
// connection hold nothing while it waits.
//
// Not OK: the deltas cannot all be given; Reason says why (a metric label of
// crease_recoveries_total).
type HistoryAnswer struct {
	ID     uint64
	Match  string
	OK     bool
	Frames []*Frame
	Last   uint64
	Reason string
}

// Reasons of a HistoryAnswer that is not OK, and of the shard's own give-ups.
const (
	RecoveryUnavailable = "unavailable"  // another epoch, older than the history kept, or ahead of the store
	RecoveryRateLimited = "rate_limited" // over the gateway's history read rate
	RecoveryError       = "error"        // the read failed or timed out
	RecoveryTimeout     = "timeout"      // no answer within the shard's deadline
	RecoveryDisabled    = "disabled"     // the gateway recovers nothing
	RecoveryInvalid     = "invalid"      // an answer that does not cover what the loop delivered (a bug)
	RecoveryRecovered   = "recovered"    // the deltas followed: `recovered:true`
)

// RecoveryResults lists every crease_recoveries_total result.
var RecoveryResults = []string{RecoveryRecovered, RecoveryUnavailable, RecoveryRateLimited, RecoveryError, RecoveryTimeout, RecoveryDisabled, RecoveryInvalid}

// History is the gateway's history service, as a shard sees it.
type History interface {
	// Request queues req. It runs on the loop and must not block; the answer comes
	// back through the shard's PostHistory, exactly once unless the request is
	// abandoned (the shard forgets requests it no longer waits for).
	Request(req HistoryRequest)
}

// PostHistory hands an answer to the loop (any goroutine). It never blocks.
func (s *Shard) PostHistory(a *HistoryAnswer) {
	s.inbox.push(&inboxItem{hist: a, at: s.now()})
	s.wake()
}
