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

// The four outcomes of Stream.ApplyDelta.
const (
	Applied  Action = iota + 1 // the delta continued the held state: its patch is now part of it
	Stale                      // seq ≤ the held seq of the same epoch (or already buffered): skipped
	Gap                        // a hole, another epoch, or a patch that cannot be applied: a snapshot is needed
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
	// ErrNoState: Resume without a held state.
	ErrNoState = errors.New("client: no state held to resume from")
)

// Position is a place in a match's stream: the epoch and the seq within it
// (PROTOCOL.md, "Stream position"). An empty Epoch is one a version 1 gateway did not
// say; it is compatible with every epoch.
type Position struct {
	Epoch string
	Seq   uint64
}

// Delta is what a Stream needs of a `delta` frame.
type Delta struct {
	Epoch string // "": not said (a version 1 gateway), judged by Seq alone
	Seq   uint64
	// CatchUp says From is set: the patch applies to any state of the epoch at a seq
	// from From to Seq-1 (a catch-up delta). Without it the patch applies to Seq-1 only.
	CatchUp bool
	From    uint64
	Patch   []byte // an RFC 7396 merge patch; retained while buffered, never modified
}

// base is the lowest held seq the delta applies to.
func (d Delta) base() uint64 {
	if d.CatchUp {
		return d.From
	}
	return d.Seq - 1
}

// StreamStats counts what a Stream has done.
type StreamStats struct {
	Snapshots uint64 // snapshots taken
	Applied   uint64 // deltas applied, directly or from the buffer
	CatchUps  uint64 // of which catch-up deltas (with From)
	Stale     uint64 // deltas skipped as stale or duplicate
	Gaps      uint64 // gaps found, directly or in the buffer after a snapshot
	Epochs    uint64 // deltas of a new epoch that made the stream wait
	Resyncs   uint64 // Resync calls
	Resumes   uint64 // Resume calls (recovered subscriptions)
	Buffered  uint64 // deltas buffered while waiting for a snapshot
}

// Stream is the state of one match as the client algorithm of PROTOCOL.md rebuilds it:
// a snapshot plus the deltas after it, applied as RFC 7396 merge patches in seq order,
// within one epoch. It does no I/O and is not safe for concurrent use; its owner feeds
// it and, whenever Waiting reports true, fetches a snapshot and hands it to
// ApplySnapshot (or, after a recovered subscription, calls Resume).
//
// A new Stream waits for its first snapshot and buffers the deltas that arrive meanwhile.
type Stream struct {
	// MaxPending bounds the buffer; 0 means DefaultMaxPending.
	MaxPending int

	have    bool   // a state is held (it may be behind while waiting)
	epoch   string // epoch of the held state
	seq     uint64 // seq of the held state
	state   []byte // never modified in place: State may hand it out
	waiting bool
	// expect is the epoch deltas are expected in: that of the last delta or snapshot,
	// "" after Resync (the snapshot fetched next covers any change before it).
	expect  string
	pending []Delta // sorted by seq, no duplicate seq, all of one epoch (or "")
	stats   StreamStats
}

// NewStream returns a Stream waiting for its first snapshot.
func NewStream() *Stream { return &Stream{waiting: true} }

// Waiting reports whether the stream needs a snapshot: before the first one, after a gap
// or a new epoch, and after Resync.
func (s *Stream) Waiting() bool { return s.waiting }

// HasState reports whether a state is held (possibly behind, see Waiting).
func (s *Stream) HasState() bool { return s.have }

// Seq returns the seq of the held state (0 without one).
func (s *Stream) Seq() uint64 { return s.seq }

// Epoch returns the epoch of the held state ("" without one, or when no one said it).
func (s *Stream) Epoch() string { return s.epoch }

// Position returns the position of the held state.
func (s *Stream) Position() Position { return Position{s.epoch, s.seq} }

// State returns the JSON text of the held state, nil without one. The slice is shared:
// the caller must not modify it (the Stream never does, it replaces it).
func (s *Stream) State() []byte { return s.state }

// Pending returns how many deltas are buffered.
func (s *Stream) Pending() int { return len(s.pending) }

// Stats returns the counters.
func (s *Stream) Stats() StreamStats { return s.stats }

// Resync marks the held state as possibly behind (a `resync` frame, or a new connection
// whose deltas may not continue the old one's): deltas are buffered until the next
// ApplySnapshot or Resume.
func (s *Stream) Resync() {
	s.stats.Resyncs++
	s.waiting = true
	s.expect = ""
}

// Resume goes on from the held position without a snapshot: the gateway answered a
// subscribe with `since` = Position() by `recovered:true`, so the deltas after it follow.
// The buffered ones that continue the state are applied.
func (s *Stream) Resume() error {
	if !s.have {
		return ErrNoState
	}
	s.stats.Resumes++
	s.waiting = false
	s.expect = s.epoch
	s.dropOtherEpochs(s.epoch)
	return s.drain()
}

// sameEpoch reports whether two epochs may be the same stream ("" is unknown).
func sameEpoch(a, b string) bool { return a == "" || b == "" || a == b }

// ApplySnapshot takes snap's state and position, then applies the buffered deltas of its
// epoch after it, in order. If the buffer has a hole the stream counts a gap and keeps
// waiting (fetch again). A snapshot of another epoch sets the position even when its
// seq is lower (the stream started over); one of the held epoch that is older than the
// held state is not a step back: the newer state is kept and the buffer applied to it.
func (s *Stream) ApplySnapshot(snap Snapshot) error {
	if !isJSONObject(snap.State) {
		return ErrBadState
	}
	s.stats.Snapshots++
	if !s.have || !sameEpoch(snap.Epoch, s.epoch) || snap.Seq >= s.seq {
		s.have, s.epoch, s.seq, s.state = true, snap.Epoch, snap.Seq, snap.State
	}
	s.waiting = false
	s.expect = s.epoch
	s.dropOtherEpochs(s.epoch)
	return s.drain()
}

// Snapshot is ApplySnapshot of a snapshot that says no epoch (version 1).
func (s *Stream) Snapshot(seq uint64, state []byte) error {
	return s.ApplySnapshot(Snapshot{Seq: seq, State: state})
}

// dropOtherEpochs drops the buffered deltas that cannot belong to epoch.
func (s *Stream) dropOtherEpochs(epoch string) {
	s.pending = slices.DeleteFunc(s.pending, func(d Delta) bool { return !sameEpoch(d.Epoch, epoch) })
}

// drain applies the buffered deltas that continue the held state and drops the covered
// ones; a buffered delta above the state that none continues is a gap.
func (s *Stream) drain() error {
	for {
		s.pending = slices.DeleteFunc(s.pending, func(d Delta) bool { return d.Seq <= s.seq })
		if len(s.pending) == 0 {
			return nil
		}
		// The one reaching furthest among those that apply to the held state: a
		// catch-up delta may cover the plain ones before it.
		best := -1
		for i, d := range s.pending {
			if d.base() <= s.seq {
				best = i
			}
		}
		if best < 0 {
			s.stats.Gaps++
			s.waiting = true
			return nil
		}
		d := s.pending[best]
		if err := s.apply(d); err != nil {
			// The state is now behind by this delta: the next snapshot repairs it.
			s.stats.Gaps++
			s.waiting = true
			s.pending = slices.Delete(s.pending, 0, best+1)
			return err
		}
	}
}

// ApplyDelta feeds one delta. While waiting it is buffered (or skipped if the held state
// already covers it). The patch is retained while buffered: the caller must not modify
// it. A patch that cannot be merged returns Gap with an error wrapping ErrBadPatch.
//
// Gap while waiting means a delta of an epoch other than the one expected arrived: a
// snapshot requested before it may be of the old epoch, so request one after it.
func (s *Stream) ApplyDelta(d Delta) (Action, error) {
	if s.have && sameEpoch(d.Epoch, s.epoch) && d.Seq <= s.seq {
		s.stats.Stale++
		return Stale, nil
	}
	if !isJSONObject(d.Patch) {
		s.stats.Gaps++
		s.waiting = true
		return Gap, fmt.Errorf("%w: seq %d", ErrBadPatch, d.Seq)
	}
	newEpoch := d.Epoch != "" && s.expect != "" && d.Epoch != s.expect
	if d.Epoch != "" {
		s.expect = d.Epoch
	}
	if s.waiting {
		if !s.buffer(d) {
			s.stats.Stale++
			return Stale, nil
		}
		if newEpoch {
			s.stats.Epochs++
			return Gap, nil
		}
		s.stats.Buffered++
		return Buffered, nil
	}
	if !sameEpoch(d.Epoch, s.epoch) || d.base() > s.seq {
		if sameEpoch(d.Epoch, s.epoch) {
			s.stats.Gaps++
		} else {
			s.stats.Epochs++
		}
		s.waiting = true
		// Keep it: a snapshot a little older than it makes it usable.
		s.buffer(d)
		return Gap, nil
	}
	if err := s.apply(d); err != nil {
		s.stats.Gaps++
		s.waiting = true
		return Gap, err
	}
	return Applied, nil
}

// Delta is ApplyDelta of a plain delta that says no epoch (version 1).
func (s *Stream) Delta(seq uint64, patch []byte) (Action, error) {
	return s.ApplyDelta(Delta{Seq: seq, Patch: patch})
}

// buffer keeps d for the next snapshot and reports whether it was new. Deltas arrive in
// stream order, so one of a new epoch makes the buffered deltas of other epochs obsolete.
func (s *Stream) buffer(d Delta) bool {
	if d.Epoch != "" {
		s.dropOtherEpochs(d.Epoch)
	}
	i, found := slices.BinarySearchFunc(s.pending, d.Seq, func(p Delta, seq uint64) int {
		switch {
		case p.Seq < seq:
			return -1
		case p.Seq > seq:
			return 1
		}
		return 0
	})
	if found {
		// Both give the state at this seq; keep the one that applies more widely.
		if d.base() < s.pending[i].base() {
			s.pending[i] = d
		}
		return false
	}
	s.pending = slices.Insert(s.pending, i, d)
	limit := s.MaxPending
	if limit <= 0 {
		limit = DefaultMaxPending
	}
	if over := len(s.pending) - limit; over > 0 {
		// Dropping the oldest leaves a hole the next snapshot most likely covers anyway.
		s.pending = slices.Delete(s.pending, 0, over)
	}
	return true
}

func (s *Stream) apply(d Delta) error {
	next, err := jsonpatch.MergePatch(s.state, d.Patch)
	if err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrBadPatch, d.Seq, err)
	}
	s.seq, s.state = d.Seq, next
	if s.epoch == "" {
		s.epoch = d.Epoch // a version 1 snapshot learns its epoch from the deltas
	}
	s.stats.Applied++
	if d.CatchUp {
		s.stats.CatchUps++
	}
	return nil
}

// isJSONObject reports whether b is one valid JSON object (merge patches and match states
// both are).
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}
