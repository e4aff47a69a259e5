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
)

// Sentinel errors shared by every implementation.
var (
	// ErrUnknownMatch: no snapshot exists for the match.
	ErrUnknownMatch = errors.New("bus: unknown match")
	// ErrSeqConflict: a delta's seq is not the stored snapshot seq + 1 (another publisher
	// got there first, or this one is behind).
	ErrSeqConflict = errors.New("bus: seq is not snapshot seq + 1")
	// ErrClosed: the bus was closed.
	ErrClosed = errors.New("bus: closed")
)

// Delta is one state change as a publisher hands it to the bus: the full state after the
// change (stored as the snapshot at Seq) and the verbatim JSON text of the `delta` frame
// (published to subscribers). Both are stored and published in one atomic step.
type Delta struct {
	Match string
	Title string          // human title for /v1/matches; may be empty after the first delta
	Seq   uint64          // must be the stored seq + 1 (1 for a new match)
	State json.RawMessage // the whole match state at Seq
	Frame []byte          // the exact JSON text of the `delta` frame
}

// Publisher is the write side used by ingest. Implementations are safe for concurrent use.
type Publisher interface {
	// PublishDelta stores d.State as the snapshot at d.Seq and publishes d.Frame, atomically.
	// It returns ErrSeqConflict (wrapped) when d.Seq is not the stored seq + 1.
	PublishDelta(ctx context.Context, d Delta) error
	// PublishEvent publishes the JSON text of an `event` frame; events are not stored.
	PublishEvent(ctx context.Context, match string, frame []byte) error
}

// Snapshot is the stored state of a match: Raw is the exact JSON {"match","seq","state"}
// served by GET /v1/matches/{id}.
type Snapshot struct {
	Match string
	Seq   uint64
	Raw   []byte
}

// MatchInfo is one row of GET /v1/matches.
type MatchInfo struct {
	Match   string `json:"match"`
	Title   string `json:"title"`
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

// Sink receives bus messages on the gateway side. The gateway implements it.
// Both methods run on the bus's own goroutine and must never block: they hand off to the
// shards' queues and return.
type Sink interface {
	// Deliver hands over the raw message text of a `delta` or `event` frame. The slice is
	// owned by the sink from then on (the bus must not reuse it).
	Deliver(data []byte)
	// Lost says that messages of match may have been lost (a disconnect, a resubscribe, an
	// overflow): the gateway sends `resync` with the given reason to its subscribers.
	Lost(match string, reason ResyncReason)
}

// Subscriber is the read side of the bus for a gateway, driven by local interest: the
// gateway calls Subscribe when its first local subscriber of a match appears and
// Unsubscribe when its last leaves. Both are called from event loops and must not block;
// implementations apply them asynchronously (and may debounce Unsubscribe).
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
	Subscriber
}
