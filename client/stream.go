package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// Action says what a Stream did with a delta.
type Action uint8

// The four outcomes of Stream.Delta.
const (
	Applied  Action = iota + 1 // seq was last+1: the patch is now part of the state
	Stale                      // seq ≤ last (or already buffered): skipped
	Gap                        // seq > last+1, or a patch that cannot be applied: a snapshot is needed
	Buffered                   // no current state yet (waiting for a snapshot): kept for later
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Applied:
		return "applied"
	case Stale:
		return "stale"
	case Gap:
		return "gap"
	case Buffered:
		return "buffered"
	}
	return "unknown"
}

// DefaultMaxPending bounds the deltas a Stream buffers while it waits for a snapshot.
// A match produces a few deltas a second, so this covers minutes of a slow snapshot
// endpoint; past it the oldest are dropped, which at worst costs one more refetch.
const DefaultMaxPending = 4096

// Errors of Stream.
var (
	// ErrBadState: a snapshot state that is not a JSON object.
	ErrBadState = errors.New("client: snapshot state is not a JSON object")
	// ErrBadPatch: a delta patch that is not a JSON object or cannot be merged.
	ErrBadPatch = errors.New("client: delta patch is not a mergeable JSON object")
)

// StreamStats counts what a Stream has done.
type StreamStats struct {
	Snapshots uint64 // snapshots taken
	Applied   uint64 // deltas applied, directly or from the buffer
	Stale     uint64 // deltas skipped as stale or duplicate
	Gaps      uint64 // gaps found, directly or in the buffer after a snapshot
	Resyncs   uint64 // Resync calls
	Buffered  uint64 // deltas buffered while waiting for a snapshot
}

type pendingDelta struct {
	seq   uint64
	patch []byte
}

// Stream is the state of one match as the client algorithm of PROTOCOL.md rebuilds it:
// a snapshot plus the deltas after it, applied as RFC 7396 merge patches in seq order.
// It does no I/O and is not safe for concurrent use; its owner feeds it and, whenever
// Waiting reports true, fetches a snapshot and hands it to Snapshot.
//
// A new Stream waits for its first snapshot and buffers the deltas that arrive meanwhile.
type Stream struct {
	// MaxPending bounds the buffer; 0 means DefaultMaxPending.
	MaxPending int

	have    bool   // a state is held (it may be behind while waiting)
	seq     uint64 // seq of the held state
	state   []byte // never modified in place: State may hand it out
	waiting bool
	pending []pendingDelta // sorted by seq, no duplicates, all > seq
	stats   StreamStats
}

// NewStream returns a Stream waiting for its first snapshot.
func NewStream() *Stream { return &Stream{waiting: true} }

// Waiting reports whether the stream needs a snapshot: before the first one, after a gap,
// and after Resync.
func (s *Stream) Waiting() bool { return s.waiting }

// HasState reports whether a state is held (possibly behind, see Waiting).
func (s *Stream) HasState() bool { return s.have }

// Seq returns the seq of the held state (0 without one).
func (s *Stream) Seq() uint64 { return s.seq }

// State returns the JSON text of the held state, nil without one. The slice is shared:
// the caller must not modify it (the Stream never does, it replaces it).
func (s *Stream) State() []byte { return s.state }

// Pending returns how many deltas are buffered.
func (s *Stream) Pending() int { return len(s.pending) }

// Stats returns the counters.
func (s *Stream) Stats() StreamStats { return s.stats }

// Resync marks the held state as possibly behind (a `resync` frame, or a new connection
// whose deltas may not continue the old one's): deltas are buffered until the next
// Snapshot.
func (s *Stream) Resync() {
	s.stats.Resyncs++
	s.waiting = true
}

// Snapshot takes the state at seq, then applies the buffered deltas after it in order.
// If the buffer has a hole the stream counts a gap and keeps waiting (fetch again). A
// snapshot older than the state already held is not a step back: the newer state is kept
// and the buffer applied to it. The stream keeps state; the caller may reuse nothing.
func (s *Stream) Snapshot(seq uint64, state []byte) error {
	if !isJSONObject(state) {
		return ErrBadState
	}
	s.stats.Snapshots++
	if !s.have || seq >= s.seq {
		s.have, s.seq, s.state = true, seq, state
	}
	s.waiting = false
	return s.drain()
}

// drain applies the buffered deltas that follow the held state and drops the covered ones.
func (s *Stream) drain() error {
	i := 0
	for ; i < len(s.pending); i++ {
		p := s.pending[i]
		if p.seq <= s.seq {
			continue
		}
		if p.seq > s.seq+1 {
			s.stats.Gaps++
			s.waiting = true
			break
		}
		if err := s.apply(p.seq, p.patch); err != nil {
			// The state is now behind by this delta: the next snapshot repairs it.
			s.stats.Gaps++
			s.waiting = true
			i++
			s.pending = slices.Delete(s.pending, 0, i)
			return err
		}
	}
	s.pending = slices.Delete(s.pending, 0, i)
	return nil
}

// Delta feeds the delta at seq. While waiting it is buffered (or skipped if the held
// state already covers it). The patch is retained while buffered: the caller must not
// modify it. A patch that cannot be merged returns Gap with an error wrapping ErrBadPatch.
func (s *Stream) Delta(seq uint64, patch []byte) (Action, error) {
	if s.have && seq <= s.seq {
		s.stats.Stale++
		return Stale, nil
	}
	if !isJSONObject(patch) {
		s.stats.Gaps++
		s.waiting = true
		return Gap, fmt.Errorf("%w: seq %d", ErrBadPatch, seq)
	}
	if s.waiting {
		return s.buffer(seq, patch), nil
	}
	if seq > s.seq+1 {
		s.stats.Gaps++
		s.waiting = true
		// Keep it: a snapshot at seq-1 or a little older makes it usable.
		s.buffer(seq, patch)
		s.stats.Buffered-- // counted as the gap, not as a buffered delta
		return Gap, nil
	}
	if err := s.apply(seq, patch); err != nil {
		s.stats.Gaps++
		s.waiting = true
		return Gap, err
	}
	return Applied, nil
}

func (s *Stream) buffer(seq uint64, patch []byte) Action {
	i, found := slices.BinarySearchFunc(s.pending, seq, func(p pendingDelta, seq uint64) int {
		switch {
		case p.seq < seq:
			return -1
		case p.seq > seq:
			return 1
		}
		return 0
	})
	if found {
		s.stats.Stale++
		return Stale
	}
	s.pending = slices.Insert(s.pending, i, pendingDelta{seq, patch})
	limit := s.MaxPending
	if limit <= 0 {
		limit = DefaultMaxPending
	}
	if over := len(s.pending) - limit; over > 0 {
		// Dropping the oldest leaves a hole the next snapshot most likely covers anyway.
		s.pending = slices.Delete(s.pending, 0, over)
	}
	s.stats.Buffered++
	return Buffered
}

func (s *Stream) apply(seq uint64, patch []byte) error {
	next, err := jsonpatch.MergePatch(s.state, patch)
	if err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrBadPatch, seq, err)
	}
	s.seq, s.state = seq, next
	s.stats.Applied++
	return nil
}

// isJSONObject reports whether b is one valid JSON object (merge patches and match states
// both are).
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}
