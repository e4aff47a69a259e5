package client

import (
	"encoding/json"
	"time"

	"crease/wire"
)

// Phase is the coarse state of a Client.
type Phase uint8

// The phases reported through Options.OnStatus.
const (
	Connecting   Phase = iota + 1 // dialing, or waiting for `hello`
	Live                          // connected, every subscribed match holds a current state
	Resyncing                     // connected, fetching the snapshot of at least one match
	Reconnecting                  // disconnected, dialing again in Status.In
	Closed                        // Run has returned
)

// String returns the phase's name.
func (p Phase) String() string {
	switch p {
	case Connecting:
		return "connecting"
	case Live:
		return "live"
	case Resyncing:
		return "resyncing"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	}
	return "unknown"
}

// Status is what Options.OnStatus receives.
type Status struct {
	Phase Phase
	In    time.Duration // Reconnecting: the delay before the next dial
	Err   error         // Reconnecting: why the last connection or dial ended
}

// Cause says why a State was delivered.
type Cause uint8

// The causes of a State.
const (
	CauseSnapshot Cause = iota + 1 // the first state of a subscription
	CauseDelta                     // a delta was applied
	CauseResync                    // a later snapshot: after `resync`, a gap or a reconnect
)

// String returns the cause's name.
func (c Cause) String() string {
	switch c {
	case CauseSnapshot:
		return "snapshot"
	case CauseDelta:
		return "delta"
	case CauseResync:
		return "resync"
	}
	return "unknown"
}

// State is the whole state of a match as a subscriber sees it.
type State struct {
	Match string
	Epoch string // "" when the gateway says none (version 1)
	Seq   uint64
	JSON  []byte // shared between subscribers: never modify it
	Cause Cause
}

// Snapshot is the answer of GET /v1/matches/{id}. A match that has not started (404) is
// Seq 0 with State {}. Epoch is "" from a version 1 gateway.
type Snapshot struct {
	Match string          `json:"match"`
	Epoch string          `json:"epoch,omitempty"`
	Seq   uint64          `json:"seq"`
	State json.RawMessage `json:"state"`
}

// ServerError is an `error` frame: the gateway refused a request.
type ServerError struct {
	Code    string // one of the Code constants, or a code of a newer gateway
	Message string
	Match   string // the match concerned, "" when none
}

// The `error` codes of PROTOCOL.md (crease/wire defines them).
const (
	CodeBadRequest           = string(wire.CodeBadRequest)
	CodeUnknownOp            = string(wire.CodeUnknownOp)
	CodeTooManySubscriptions = string(wire.CodeTooManySubscriptions)
	CodeForbidden            = string(wire.CodeForbidden)
	CodeRateLimited          = string(wire.CodeRateLimited)
	CodeTokenExpired         = string(wire.CodeTokenExpired)
	CodeUnauthorized         = string(wire.CodeUnauthorized) // an `auth` token was refused; the one held stays until it expires
)

func (e *ServerError) Error() string {
	if e.Match != "" {
		return "client: server refused: " + e.Code + " (match " + e.Match + "): " + e.Message
	}
	return "client: server refused: " + e.Code + ": " + e.Message
}

// Observer sees what a Client sees, in the order Run's goroutine handles it; Checker
// implements it. The methods run on Run's goroutine and must not block.
type Observer interface {
	// Connected: a new connection is up; its frames follow.
	Connected()
	// Frame: one server frame, in arrival order. The client never reuses raw; the
	// observer may keep it but must not modify it.
	Frame(raw []byte)
	// SnapshotRequested: a snapshot of match is about to be fetched (at most one fetch
	// per match is outstanding).
	SnapshotRequested(match string)
	// Snapshot: the answer of that fetch.
	Snapshot(s Snapshot)
}
