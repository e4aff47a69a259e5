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
