package client

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func mustEqualJSON(t *testing.T, got, want string) {
	t.Helper()
	eq, err := JSONEqual([]byte(got), []byte(want))
	if err != nil || !eq {
		t.Fatalf("state %s, want %s (%v)", got, want, err)
	}
}

func delta(t *testing.T, s *Stream, seq uint64, patch string, want Action) {
	t.Helper()
	got, err := s.Delta(seq, []byte(patch))
	if err != nil {
		t.Fatalf("Delta(%d): %v", seq, err)
	}
	if got != want {
		t.Fatalf("Delta(%d) = %v, want %v", seq, got, want)
	}
}

func TestStreamBuffersUntilSnapshotThenApplies(t *testing.T) {
	s := NewStream()
	if !s.Waiting() || s.HasState() {
		t.Fatal("a new stream must wait without a state")
	}
	delta(t, s, 4, `{"r":4}`, Buffered)
	delta(t, s, 6, `{"r":6,"w":1}`, Buffered)
	delta(t, s, 5, `{"r":5}`, Buffered) // out of order in the buffer is sorted
	delta(t, s, 5, `{"r":5}`, Stale)    // duplicate
	if err := s.Snapshot(4, []byte(`{"r":4,"w":0,"x":"y"}`)); err != nil {
		t.Fatal(err)
	}
	if s.Waiting() || s.Seq() != 6 || s.Pending() != 0 {
		t.Fatalf("after snapshot: waiting %v seq %d pending %d", s.Waiting(), s.Seq(), s.Pending())
	}
	mustEqualJSON(t, string(s.State()), `{"r":6,"w":1,"x":"y"}`)
	delta(t, s, 7, `{"x":null}`, Applied) // RFC 7396: null removes
	mustEqualJSON(t, string(s.State()), `{"r":6,"w":1}`)
	delta(t, s, 7, `{"r":99}`, Stale)
	delta(t, s, 3, `{"r":99}`, Stale)
	st := s.Stats()
	want := StreamStats{Snapshots: 1, Applied: 3, Stale: 3, Buffered: 3}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestStreamGapWaitsAndKeepsTheDelta(t *testing.T) {
	s := NewStream()
	if err := s.Snapshot(10, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	delta(t, s, 12, `{"a":12}`, Gap)
	if !s.Waiting() || s.Seq() != 10 {
		t.Fatalf("after gap: waiting %v seq %d", s.Waiting(), s.Seq())
	}
	delta(t, s, 13, `{"b":13}`, Buffered)
	// A snapshot at 11 closes the gap with the kept 12 and the buffered 13.
	if err := s.Snapshot(11, []byte(`{"a":11}`)); err != nil {
		t.Fatal(err)
	}
	if s.Waiting() || s.Seq() != 13 {
		t.Fatalf("after snapshot: waiting %v seq %d", s.Waiting(), s.Seq())
	}
	mustEqualJSON(t, string(s.State()), `{"a":12,"b":13}`)
	if st := s.Stats(); st.Gaps != 1 || st.Applied != 2 || st.Buffered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamHoleInBufferKeepsWaiting(t *testing.T) {
	s := NewStream()
	delta(t, s, 2, `{"n":2}`, Buffered)
	delta(t, s, 4, `{"n":4}`, Buffered)
	if err := s.Snapshot(1, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if !s.Waiting() || s.Seq() != 2 || s.Pending() != 1 || s.Stats().Gaps != 1 {
		t.Fatalf("waiting %v seq %d pending %d stats %+v", s.Waiting(), s.Seq(), s.Pending(), s.Stats())
	}
	if err := s.Snapshot(3, []byte(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	if s.Waiting() || s.Seq() != 4 {
		t.Fatalf("waiting %v seq %d", s.Waiting(), s.Seq())
	}
	mustEqualJSON(t, string(s.State()), `{"n":4}`)
}

func TestStreamResyncBuffersAndOlderSnapshotIsNoStepBack(t *testing.T) {
	s := NewStream()
	if err := s.Snapshot(5, []byte(`{"n":5}`)); err != nil {
		t.Fatal(err)
	}
	s.Resync()
	if !s.Waiting() {
		t.Fatal("Resync must make the stream wait")
	}
	delta(t, s, 5, `{"n":"old"}`, Stale) // the held state covers it even while waiting
	delta(t, s, 6, `{"n":6}`, Buffered)
	// A lagging snapshot (seq 3) must not roll the state back.
	if err := s.Snapshot(3, []byte(`{"n":3}`)); err != nil {
		t.Fatal(err)
	}
	if s.Waiting() || s.Seq() != 6 {
		t.Fatalf("waiting %v seq %d", s.Waiting(), s.Seq())
	}
	mustEqualJSON(t, string(s.State()), `{"n":6}`)
	if st := s.Stats(); st.Resyncs != 1 || st.Snapshots != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamBadInput(t *testing.T) {
	s := NewStream()
	for _, bad := range []string{``, `[1]`, `null`, `{"a":`, `"x"`} {
		if err := s.Snapshot(1, []byte(bad)); !errors.Is(err, ErrBadState) {
			t.Fatalf("Snapshot(%q) = %v, want ErrBadState", bad, err)
		}
	}
	if s.HasState() || s.Stats().Snapshots != 0 {
		t.Fatal("a bad snapshot must change nothing")
	}
	if err := s.Snapshot(1, []byte(` {"a":1}`)); err != nil {
		t.Fatal(err)
	}
	for i, bad := range []string{`[1]`, `{"a":`, ``, `null`} {
		act, err := s.Delta(2, []byte(bad))
		if act != Gap || !errors.Is(err, ErrBadPatch) {
			t.Fatalf("Delta(%q) = %v, %v; want Gap, ErrBadPatch", bad, act, err)
		}
		if !s.Waiting() || s.Seq() != 1 || s.Stats().Gaps != uint64(i+1) {
			t.Fatalf("after bad patch: waiting %v seq %d", s.Waiting(), s.Seq())
		}
	}
}

func TestStreamPendingBound(t *testing.T) {
	s := &Stream{MaxPending: 3, waiting: true}
	for seq := uint64(1); seq <= 5; seq++ {
		delta(t, s, seq, fmt.Sprintf(`{"n":%d}`, seq), Buffered)
	}
	if s.Pending() != 3 {
		t.Fatalf("pending %d, want 3", s.Pending())
	}
	// 1 and 2 were dropped: a snapshot at 0 leaves a hole, one at 2 closes it.
	if err := s.Snapshot(0, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if !s.Waiting() {
		t.Fatal("the dropped oldest deltas must show as a gap")
	}
	if err := s.Snapshot(2, []byte(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	if s.Waiting() || s.Seq() != 5 {
		t.Fatalf("waiting %v seq %d", s.Waiting(), s.Seq())
	}
}

func TestBackoffWindow(t *testing.T) {
	b := Backoff{Base: DefaultBackoffBase, Cap: DefaultBackoffCap, InitialSpread: DefaultInitialSpread}
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 5 * time.Second}, {3, 5 * time.Second}, {4, 8 * time.Second}, {5, 16 * time.Second},
		{6, 30 * time.Second}, {63, 30 * time.Second}, {1000, 30 * time.Second},
	} {
		if got := b.Window(c.attempt); got != c.want {
			t.Errorf("Window(%d) = %v, want %v", c.attempt, got, c.want)
		}
	}
	if got := b.Delay(4, 0.5); got != 4*time.Second {
		t.Errorf("Delay(4, 0.5) = %v", got)
	}
	if got := b.Delay(0, 0); got != 0 {
		t.Errorf("Delay(0, 0) = %v", got)
	}
}

// applyDelta feeds d and checks the action.
func applyDelta(t *testing.T, s *Stream, d Delta, want Action) {
	t.Helper()
	got, err := s.ApplyDelta(d)
	if err != nil {
		t.Fatalf("ApplyDelta(%+v): %v", d, err)
	}
	if got != want {
		t.Fatalf("ApplyDelta(%s:%d from %d/%v) = %v, want %v", d.Epoch, d.Seq, d.From, d.CatchUp, got, want)
	}
}

func ed(epoch string, seq uint64, patch string) Delta {
	return Delta{Epoch: epoch, Seq: seq, Patch: []byte(patch)}
}

func catchUp(epoch string, from, seq uint64, patch string) Delta {
	return Delta{Epoch: epoch, Seq: seq, From: from, CatchUp: true, Patch: []byte(patch)}
}

func mustSnapshot(t *testing.T, s *Stream, epoch string, seq uint64, state string) {
	t.Helper()
	if err := s.ApplySnapshot(Snapshot{Epoch: epoch, Seq: seq, State: []byte(state)}); err != nil {
		t.Fatal(err)
	}
}

func wantPosition(t *testing.T, s *Stream, epoch string, seq uint64, waiting bool) {
	t.Helper()
	if got := s.Position(); got != (Position{epoch, seq}) || s.Waiting() != waiting {
		t.Fatalf("position %+v waiting %v, want %s:%d waiting %v", got, s.Waiting(), epoch, seq, waiting)
	}
}

func TestStreamDeltaOfAnotherEpochIsANewStream(t *testing.T) {
	s := NewStream()
	mustSnapshot(t, s, "e1", 40, `{"n":40,"old":true}`)
	applyDelta(t, s, ed("e1", 41, `{"n":41}`), Applied)
	applyDelta(t, s, ed("e1", 41, `{"n":0}`), Stale)
	// The stream started over: seq 2 of e2 is no older than 41 of e1, it is another stream.
	applyDelta(t, s, ed("e2", 2, `{"n":2}`), Gap)
	wantPosition(t, s, "e1", 41, true)
	applyDelta(t, s, ed("e2", 3, `{"n":3}`), Buffered)
	// The snapshot of the new epoch sets the position although its seq is lower.
	mustSnapshot(t, s, "e2", 2, `{"n":2}`)
	wantPosition(t, s, "e2", 3, false)
	mustEqualJSON(t, string(s.State()), `{"n":3}`)
	if st := s.Stats(); st.Epochs != 1 || st.Applied != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamWaitingSignalsAnUnexpectedEpochOnce(t *testing.T) {
	s := NewStream()
	mustSnapshot(t, s, "e1", 5, `{"n":5}`)
	applyDelta(t, s, ed("e1", 7, `{"n":7}`), Gap) // waiting now, a fetch goes out
	applyDelta(t, s, ed("e1", 8, `{"n":8}`), Buffered)
	// Meanwhile the stream starts over: the fetch out may answer the old epoch.
	applyDelta(t, s, ed("e2", 1, `{"m":1}`), Gap)
	applyDelta(t, s, ed("e2", 2, `{"m":2}`), Buffered)
	if s.Pending() != 2 {
		t.Fatalf("pending %d: the old epoch's deltas must be dropped", s.Pending())
	}
	// The old answer comes: taken, but nothing of e2 applies to it; later e2 deltas are gaps.
	mustSnapshot(t, s, "e1", 8, `{"n":8}`)
	wantPosition(t, s, "e1", 8, false)
	applyDelta(t, s, ed("e2", 3, `{"m":3}`), Gap)
	mustSnapshot(t, s, "e2", 2, `{"m":2}`)
	wantPosition(t, s, "e2", 3, false)
	mustEqualJSON(t, string(s.State()), `{"m":3}`)

	// After Resync (a `resync{epoch}` frame) any epoch is expected: the snapshot fetched
	// after it covers the change.
	s.Resync()
	applyDelta(t, s, ed("e3", 1, `{"k":1}`), Buffered)
	mustSnapshot(t, s, "e3", 0, `{}`)
	wantPosition(t, s, "e3", 1, false)
}

func TestStreamVersion1SnapshotWorksWithAndWithoutEpochs(t *testing.T) {
	// Pure version 1: no epoch anywhere.
	s := NewStream()
	delta(t, s, 3, `{"n":3}`, Buffered)
	mustSnapshot(t, s, "", 2, `{"n":2}`)
	wantPosition(t, s, "", 3, false)
	// A snapshot without epoch from a gateway whose deltas say one: the epoch is learnt.
	s = NewStream()
	mustSnapshot(t, s, "", 2, `{"n":2}`)
	applyDelta(t, s, ed("e1", 3, `{"n":3}`), Applied)
	wantPosition(t, s, "e1", 3, false)
	applyDelta(t, s, ed("e2", 1, `{"n":1}`), Gap)
}

func TestStreamCatchUpDeltas(t *testing.T) {
	s := NewStream()
	mustSnapshot(t, s, "e", 10, `{"a":10,"b":1}`)
	// from 8..13: held 10 is within [8, 12]: applies.
	applyDelta(t, s, catchUp("e", 8, 13, `{"a":13,"b":null}`), Applied)
	wantPosition(t, s, "e", 13, false)
	mustEqualJSON(t, string(s.State()), `{"a":13}`)
	// from exactly the held seq applies; from above it is a gap.
	applyDelta(t, s, catchUp("e", 13, 15, `{"a":15}`), Applied)
	applyDelta(t, s, catchUp("e", 16, 18, `{"a":18}`), Gap)
	wantPosition(t, s, "e", 15, true)
	// stale even with from
	applyDelta(t, s, catchUp("e", 1, 15, `{"a":0}`), Stale)
	if st := s.Stats(); st.CatchUps != 2 || st.Gaps != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A catch-up delta of another epoch is a new stream, whatever its from.
	s = NewStream()
	mustSnapshot(t, s, "e", 10, `{}`)
	applyDelta(t, s, catchUp("f", 0, 12, `{}`), Gap)
	if st := s.Stats(); st.Epochs != 1 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
	// from 0 is a base like any other (the empty state of a match not started).
	s = NewStream()
	mustSnapshot(t, s, "e", 0, `{}`)
	applyDelta(t, s, catchUp("e", 0, 5, `{"x":5}`), Applied)
	wantPosition(t, s, "e", 5, false)
}

func TestStreamCatchUpDeltasInTheBuffer(t *testing.T) {
	s := NewStream()
	// Buffered while the snapshot is out: plain 12, a catch-up 9..15 that covers it, plain 16.
	applyDelta(t, s, ed("e", 12, `{"p":12}`), Buffered)
	applyDelta(t, s, catchUp("e", 9, 15, `{"c":15}`), Buffered)
	applyDelta(t, s, ed("e", 16, `{"p":16}`), Buffered)
	// A catch-up delta for a seq already buffered is kept when it applies more widely.
	applyDelta(t, s, catchUp("e", 3, 12, `{"p":12}`), Stale)
	mustSnapshot(t, s, "e", 10, `{"s":10}`)
	// Both 12 (now the catch-up from 3) and 15 (from 9) apply to 10: the one reaching
	// furthest is taken, covering 12; then 16.
	wantPosition(t, s, "e", 16, false)
	mustEqualJSON(t, string(s.State()), `{"s":10,"p":16,"c":15}`)
	if st := s.Stats(); st.CatchUps != 1 || st.Applied != 2 {
		t.Fatalf("stats %+v", st)
	}
	// A buffer where nothing applies to the snapshot is a gap.
	s = NewStream()
	applyDelta(t, s, catchUp("e", 20, 25, `{}`), Buffered)
	mustSnapshot(t, s, "e", 10, `{}`)
	wantPosition(t, s, "e", 10, true)
}

func TestStreamResume(t *testing.T) {
	s := NewStream()
	if err := s.Resume(); !errors.Is(err, ErrNoState) {
		t.Fatalf("Resume without state = %v", err)
	}
	mustSnapshot(t, s, "e", 7, `{"n":7}`)
	s.Resync() // a new connection
	applyDelta(t, s, ed("e", 8, `{"n":8}`), Buffered)
	applyDelta(t, s, ed("e", 9, `{"n":9}`), Buffered)
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	wantPosition(t, s, "e", 9, false)
	applyDelta(t, s, ed("e", 10, `{"n":10}`), Applied)
	// A resumed stream whose first delta does not continue it has a gap, as always.
	s.Resync()
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	applyDelta(t, s, ed("e", 12, `{"n":12}`), Gap)
	if st := s.Stats(); st.Resumes != 2 {
		t.Fatalf("stats %+v", st)
	}
}
