package bus

import (
	"context"
	"encoding/json"
	"errors"
)

// ResyncReason says why a gateway could not deliver every delta of a match. It is the
// `reason` field of a `resync` frame and a metric label.
type ResyncReason string

// The reasons of PROTOCOL.md.
const (
	ReasonSlow ResyncReason = "slow" // the connection could not keep up
	ReasonGap  ResyncReason = "gap"  // a seq was skipped on the bus
	ReasonShed ResyncReason = "shed" // the gateway shed load
	ReasonBus  ResyncReason = "bus"  // the bus link dropped or its hand-off queue overflowed
	// ReasonEpoch: the stream started over with a new epoch (PROTOCOL.md rule 1): sent
	// before the first delta of the new epoch, so that a client refetches the snapshot
	// even if it ignores epochs.
	ReasonEpoch ResyncReason = "epoch"
)

// ResyncReasons lists every ResyncReason, for metric labels.
var ResyncReasons = []ResyncReason{ReasonSlow, ReasonGap, ReasonShed, ReasonBus, ReasonEpoch}

// Sentinel errors shared by every implementation.
var (
	// ErrUnknownMatch: no snapshot exists for the match.
	ErrUnknownMatch = errors.New("bus: unknown match")
	// ErrSeqConflict: the store refused a delta's position: the store is ahead of the
	// publisher (another publisher got there first, or this one is stale), or it holds
	// another epoch of the match (PROTOCOL.md "Publishing (Redis)").
	ErrSeqConflict = errors.New("bus: seq is not the stored seq + 1 of the same epoch")
	// ErrClosed: the bus was closed.
	ErrClosed = errors.New("bus: closed")
)

// Delta is one state change as a publisher hands it to the bus: the full state after the
// change (stored as the snapshot at Epoch, Seq) and the verbatim JSON text of the `delta`
// frame (published to subscribers and appended to the match's history). All of it is
// stored and published in one atomic step, under the store rules of PublishResult.
type Delta struct {
	Match string
	Title string          // human title for /v1/matches; may be empty after the first delta
	Epoch string          // the stream's epoch (ValidEpoch); the frame carries the same
	Seq   uint64          // the stored seq + 1 of the same epoch (1 for a new stream)
	State json.RawMessage // the whole match state at Seq
	Frame []byte          // the exact JSON text of the `delta` frame
	// Journal, when not nil, is the publisher's input log after this delta (the scorer's
	// info and balls), stored with the snapshot so that a restarted publisher can rebuild
	// exactly what it published (Stored). nil leaves the stored journal as it is.
	Journal *Journal
}

// Journal is a publisher's input log: opaque entries, in order. Entries is the whole
// log after the delta; the entries before From are unchanged since the previous delta
// (the store keeps them and is sent only Entries[From:]; a store that lost them is sent
// the whole log). From is 0 to rewrite the log, len(Entries) when nothing changed. A store
// may keep the entries' byte slices: the publisher must not modify an entry once it has
// been published (it replaces it by a new slice).
type Journal struct {
	Entries [][]byte
	From    int
}

// PublishResult is what the store did with a delta: the rules of PROTOCOL.md "Publishing
// (Redis)", the same in every implementation. It is the result label of the stores'
// publish metric.
type PublishResult string

// The store rules, in the order they are checked. (SE, SS) is the stored position, (E, N)
// the delta's.
const (
	// ResultApplied: E == SE and N == SS+1 (or a store written before epochs existed, at
	// N-1): the normal case.
	ResultApplied PublishResult = "applied"
	// ResultDuplicate: a retry of the delta stored last (same position, same snapshot):
	// nothing is done, nothing is published again.
	ResultDuplicate PublishResult = "duplicate"
	// ResultNewEpoch: the store holds nothing and N == 1: a new stream (a new match, or a
	// publisher that lost its memory and found the store empty too).
	ResultNewEpoch PublishResult = "new_epoch"
	// ResultReseededEmpty: the store holds nothing and N > 1: the publisher holds the
	// whole state (the store lost its data); the match is re-seeded at N.
	ResultReseededEmpty PublishResult = "reseeded_empty"
	// ResultReseededBehind: E == SE and N > SS+1: the store is behind the publisher (a
	// failover to a lagging replica); the match is re-seeded at N, the history restarts.
	ResultReseededBehind PublishResult = "reseeded_behind"
	// ResultRefused: E == SE and N <= SS (the store is ahead: another publisher, or this
	// one is stale), or E != SE (another publisher's stream). ErrSeqConflict.
	ResultRefused PublishResult = "refused"
)

// PublishResults lists every PublishResult, for metric labels.
var PublishResults = []PublishResult{ResultApplied, ResultDuplicate, ResultNewEpoch, ResultReseededEmpty, ResultReseededBehind, ResultRefused}

// Publisher is the write side used by ingest. Implementations are safe for concurrent use.
type Publisher interface {
	// PublishDelta stores d.State as the snapshot at (d.Epoch, d.Seq), appends d.Frame to
	// the history and publishes it, atomically, under the store rules (PublishResult).
	// It returns ErrSeqConflict (wrapped) when the store refuses the position.
	PublishDelta(ctx context.Context, d Delta) error
	// PublishEvent publishes the JSON text of an `event` frame; events are not stored.
	PublishEvent(ctx context.Context, match string, frame []byte) error
}

// Snapshot is the stored state of a match: Raw is the exact JSON
// {"match","epoch","seq","state"} served by GET /v1/matches/{id}.
type Snapshot struct {
	Match string
	Epoch string
	Seq   uint64
	Raw   []byte
}

// Stored is what a restarted publisher reads to resume a match: the snapshot and the
// journal stored with it, read atomically.
type Stored struct {
	Snapshot
	State   json.RawMessage // the "state" member of Raw
	Journal [][]byte        // nil when the publisher kept none
}

// Resumer is the read side of a publisher that resumes from the store.
type Resumer interface {
	// Stored returns the snapshot and journal of match, or ErrUnknownMatch.
	Stored(ctx context.Context, match string) (Stored, error)
}

// MatchInfo is one row of GET /v1/matches.
type MatchInfo struct {
	Match   string `json:"match"`
	Title   string `json:"title"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
	Viewers int64  `json:"viewers,omitempty"`
}

// Snapshots is the read side used by the gateway's HTTP listener.
type Snapshots interface {
	// Snapshot returns the snapshot of match, or ErrUnknownMatch.
	Snapshot(ctx context.Context, match string) (Snapshot, error)
	// Matches lists live matches sorted by id.
	Matches(ctx context.Context) ([]MatchInfo, error)
}

// History is the read side of the per-match history of recent deltas (PROTOCOL.md
// `since`), which gateways read on demand to replay a reconnecting client's missed
// deltas instead of sending it to the snapshot.
type History interface {
	// History returns the deltas of match after the position (epoch, after), oldest
	// first, ending at the stored seq. ok is false when they cannot all be given: epoch
	// is not the stored epoch, after is older than the history kept, or after is ahead of
	// the store (it lost data). ok is true with no messages when after is the stored seq.
	// It returns ErrUnknownMatch for a match with nothing stored.
	History(ctx context.Context, match, epoch string, after uint64) (msgs []Message, ok bool, err error)
}

// Sink receives what a bus delivers, on the gateway side; the gateway implements it.
// Every bus calls it through its Tracker, which owns the order (PROTOCOL.md rule 1 per
// epoch) and the losses: each message is handed over once, parsed. The methods run on
// the bus's delivering goroutine (or under its lock), one call at a time, and must
// never block: they hand off to the shards' queues and return.
type Sink interface {
	// Deliver hands over a valid `delta` or `event` frame. For a delta, its seq is the
	// next one of its epoch, unless Lost for the match came since the last delivered.
	// msg.Data is owned by the sink from then on (the bus must not reuse it).
	Deliver(msg Message)
	// Lost says that messages of match may have been lost (a disconnect, a resubscribe,
	// an overflow, a gap), or that its stream starts a new epoch: the gateway sends
	// `resync` with the given reason to its subscribers.
	Lost(match string, reason ResyncReason)
	// Dropped counts a message that reached the bus and will not be delivered.
	Dropped(match string, reason DropReason)
}

// Subscriber is the read side of the bus for a gateway, driven by local interest: the
// gateway calls Subscribe when its first subscriber of a match appears on any event loop
// and Unsubscribe when its last one leaves. The gateway makes these calls on the event
// loop where the change happened, under its own interest lock, so that the calls for one
// match come in order; implementations must return at once (record the wish and apply it
// asynchronously, possibly debouncing Unsubscribe), and must not call the Sink from them.
type Subscriber interface {
	// Start begins delivering to sink; it returns once the bus is set up (it need not be
	// connected yet) and delivers until Close.
	Start(ctx context.Context, sink Sink) error
	Subscribe(match string)
	Unsubscribe(match string)
	// Ready reports whether the bus link is up (for /readyz).
	Ready() bool
	Close() error
}

// Bus is a full bus: what the embedded mode and the Redis mode both provide.
type Bus interface {
	Publisher
	Snapshots
	History
	Subscriber
}
