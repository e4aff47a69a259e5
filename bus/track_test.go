package bus

import (
	"fmt"
	"slices"
	"testing"
)

// recSink records every call as text, and what the Tracker's Position said during it.
type recSink struct {
	t     *Tracker
	calls []string
	seen  []Position // Position of the call's match, read inside the call
}

func (s *recSink) note(match, text string) {
	s.calls = append(s.calls, text)
	p, _ := s.t.Position(match)
	s.seen = append(s.seen, p)
}

func (s *recSink) Deliver(m Message) {
	if m.Kind == KindEvent {
		s.note(m.Match, "event "+m.Match)
		return
	}
	s.note(m.Match, fmt.Sprintf("delta %s %s:%d", m.Match, m.Epoch, m.Seq))
}
func (s *recSink) Lost(match string, r ResyncReason) { s.note(match, "lost "+match+" "+string(r)) }
func (s *recSink) Dropped(match string, r DropReason) {
	s.note(match, "dropped "+match+" "+string(r))
}

func newRec() (*Tracker, *recSink) {
	s := &recSink{}
	s.t = NewTracker(s)
	return s.t, s
}

func d(match, epoch string, seq uint64) Message {
	return Message{Kind: KindDelta, Match: match, Epoch: epoch, Seq: seq, Prio: PrioHigh}
}

func TestTrackerOrderGapsDuplicatesAndEpochs(t *testing.T) {
	tr, s := newRec()
	tr.Lost("m", ReasonBus) // the subscription
	for _, m := range []Message{
		d("m", "A", 5),  // first after a loss: not gap-checked
		d("m", "A", 6),  // next
		d("m", "A", 6),  // duplicate
		d("m", "A", 4),  // older
		d("m", "A", 9),  // gap
		d("m", "A", 10), // next (a delta always has an epoch: Parse)
		d("m", "B", 1),  // a new epoch: announced, seqs start over
		d("m", "B", 2),  // next of B
		d("m", "A", 11), // the old epoch, still in flight: dropped
		d("m", "C", 3),  // another new epoch, first delta not gap-checked
		d("m", "B", 3),  // B is old now too
		{Kind: KindEvent, Match: "m", Prio: PrioLow},
	} {
		tr.Message(m)
	}
	tr.Lost("m", ReasonBus) // a resubscribe
	tr.Message(d("m", "C", 2))
	tr.Message(d("m", "C", 7)) // not gap-checked after the loss; 2 was a duplicate
	tr.Message(d("m", "C", 8))
	want := []string{
		"lost m bus",
		"delta m A:5", "delta m A:6",
		"dropped m duplicate", "dropped m duplicate",
		"lost m gap", "delta m A:9",
		"delta m A:10",
		"lost m epoch", "delta m B:1", "delta m B:2",
		"dropped m old_epoch",
		"lost m epoch", "delta m C:3",
		"dropped m old_epoch",
		"event m",
		"lost m bus",
		"dropped m duplicate",
		"delta m C:7", "delta m C:8",
	}
	if !slices.Equal(s.calls, want) {
		t.Fatalf("calls\n got %q\nwant %q", s.calls, want)
	}
}

// TestTrackerStateBeforeSink: whoever reads the Position while the Sink is being told
// (a client fetching the snapshot because of that very resync) sees the change already.
func TestTrackerStateBeforeSink(t *testing.T) {
	tr, s := newRec()
	tr.Lost("m", ReasonBus)
	tr.Message(d("m", "A", 1))
	tr.Message(d("m", "A", 2))
	tr.Lost("m", ReasonBus)
	tr.Message(d("m", "B", 1))
	for i, c := range s.calls {
		p := s.seen[i]
		switch c {
		case "lost m bus":
			if p.Current {
				t.Errorf("%s: position %+v still current", c, p)
			}
		case "delta m A:2":
			if !p.Current || p.Epoch != "A" || p.Seq != 2 {
				t.Errorf("%s: position %+v", c, p)
			}
		case "lost m epoch": // told together with the delta that follows it
			if p.Epoch != "B" || p.Seq != 1 || !p.Older("A") {
				t.Errorf("%s: position %+v", c, p)
			}
		}
	}
	for i := 1; i < len(s.seen); i++ {
		if s.seen[i].Gen == s.seen[i-1].Gen && s.calls[i-1] != "lost m epoch" {
			t.Errorf("call %d (%s) did not change the Gen", i, s.calls[i])
		}
	}
}

func TestTrackerBehind(t *testing.T) {
	tr, _ := newRec()
	if _, ok := tr.Position("m"); ok {
		t.Fatal("untracked match has a position")
	}
	tr.Lost("m", ReasonBus)
	p, _ := tr.Position("m")
	if p.Behind(false, "", 0) || p.Behind(true, "A", 1) {
		t.Fatalf("nothing delivered yet, but behind: %+v", p)
	}
	tr.Message(d("m", "A", 7))
	p, _ = tr.Position("m")
	for _, c := range []struct {
		has    bool
		epoch  string
		seq    uint64
		behind bool
	}{
		{false, "", 0, true}, // the store lost everything
		{true, "A", 6, true},
		{true, "A", 7, false},
		{true, "A", 8, false},
		{true, "", 6, true}, // a store written before epochs: seq compared
		{true, "Z", 1, false},
	} {
		if got := p.Behind(c.has, c.epoch, c.seq); got != c.behind {
			t.Errorf("delivered A:7, stored %v %s:%d: behind %v", c.has, c.epoch, c.seq, got)
		}
	}
	// A new epoch: only its own seqs count, and the old epoch is behind.
	tr.Message(d("m", "B", 1))
	p, _ = tr.Position("m")
	if p.Behind(true, "B", 1) || !p.Behind(true, "A", 50) || !p.Behind(false, "", 0) || p.Behind(true, "B", 3) {
		t.Fatalf("after the new epoch B: %+v", p)
	}
}

// served is Served of a snapshot at (epoch, seq) read by a GET sent now.
func served(tr *Tracker, match, epoch string, seq uint64) bool {
	at, _ := tr.Position(match)
	return tr.Served(match, at, true, epoch, seq)
}

func TestTrackerServedAndForget(t *testing.T) {
	tr, s := newRec()
	if !served(tr, "m", "A", 1) { // untracked: nothing
		t.Fatal("a snapshot of an untracked match refused")
	}
	if _, ok := tr.Position("m"); ok {
		t.Fatal("Served made a record")
	}
	tr.Lost("m", ReasonBus)
	served(tr, "m", "A", 0) // subscribers hold A's snapshot
	tr.Message(d("m", "B", 1))
	served(tr, "m", "C", 1) // only deltas move the stream on
	tr.Message(d("m", "B", 2))
	want := []string{"lost m bus", "lost m epoch", "delta m B:1", "delta m B:2"}
	if !slices.Equal(s.calls, want) {
		t.Fatalf("calls %q, want %q", s.calls, want)
	}
	p1, _ := tr.Position("m")
	tr.Forget("m")
	if _, ok := tr.Position("m"); ok {
		t.Fatal("forgotten match still tracked")
	}
	tr.Lost("m", ReasonBus)
	p2, _ := tr.Position("m")
	if p2.Gen <= p1.Gen || p2.Epoch != "" || p2.Seq != 0 {
		t.Fatalf("tracked again: %+v after %+v", p2, p1)
	}
}

// TestTrackerFirstDeltaAfterLossMeetsTheSnapshotsServed is the sequence of
// server/failover TestClusterForcedFailoverPrimaryAlive ("resync{bus}, snapshot 25,
// delta 30"): after a resubscribe the subscribers refetch; a primary that lost its slot
// without knowing it yet answers with its own, older snapshot, and the first delta heard
// from the new primary is beyond it. Nothing delivered tells of the hole but the
// snapshot served, so the Tracker must: Lost(gap) before that delta, and "behind" for a
// snapshot older than it, whether read before it (the GET was out when it came) or after.
func TestTrackerFirstDeltaAfterLossMeetsTheSnapshotsServed(t *testing.T) {
	tr, s := newRec()
	tr.Lost("m", ReasonBus)
	for seq := uint64(1); seq <= 24; seq++ {
		tr.Message(d("m", "A", seq))
	}
	step := func(what string, want ...string) {
		t.Helper()
		if !slices.Equal(s.calls, want) {
			t.Fatalf("%s: calls\n got %q\nwant %q", what, s.calls, want)
		}
		s.calls = nil
	}
	s.calls = nil

	// The resubscribe; the old primary serves 25 (refetched from the cache as well).
	tr.Lost("m", ReasonBus)
	if !served(tr, "m", "A", 25) || !served(tr, "m", "A", 25) {
		t.Fatal("the snapshot at 25, not behind anything delivered, refused")
	}
	tr.Message(d("m", "A", 30)) // the first delta from the new primary
	tr.Message(d("m", "A", 31))
	step("first delta beyond the snapshot served", "lost m bus", "lost m gap", "delta m A:30", "delta m A:31")
	if served(tr, "m", "A", 25) || !served(tr, "m", "A", 31) {
		t.Fatal("after the delta: the old primary's 25 is behind, the new one's 31 is not")
	}

	// A snapshot at the first delta's seq - 1, or newer: nothing missed, nothing told.
	tr.Lost("m", ReasonBus)
	served(tr, "m", "A", 33)
	served(tr, "m", "A", 31)
	tr.Message(d("m", "A", 32))
	step("first delta right after the oldest snapshot", "lost m bus", "delta m A:32")
	tr.Lost("m", ReasonBus)
	served(tr, "m", "A", 40)
	tr.Message(d("m", "A", 33)) // older than the snapshot: its holders skip it
	step("first delta older than the snapshot", "lost m bus", "delta m A:33")

	// The GET is out when the first delta comes: its answer is behind it.
	tr.Lost("m", ReasonBus)
	at, _ := tr.Position("m")
	tr.Message(d("m", "A", 40))
	if tr.Served("m", at, true, "A", 38) {
		t.Fatal("a snapshot at 38 read across the first delta after the loss, 40, served")
	}
	if !tr.Served("m", at, true, "A", 39) || !tr.Served("m", at, true, "A", 41) {
		t.Fatal("a snapshot at 39 or 41 read across the first delta after the loss, 40, refused")
	}
	// A GET sent before a loss is not recorded: its requesters hear of the loss after
	// their request, and refetch.
	at, _ = tr.Position("m")
	tr.Lost("m", ReasonBus)
	if !tr.Served("m", at, true, "A", 40) {
		t.Fatal("a snapshot at the delivered seq refused")
	}
	tr.Message(d("m", "A", 45))
	step("GETs across deltas", "lost m bus", "delta m A:40", "lost m bus", "delta m A:45")

	// A new subscription of a match the store has nothing of ("not started", the state
	// before seq 1), then its stream heard from seq 3.
	tr.Lost("n", ReasonBus)
	at, _ = tr.Position("n")
	if !tr.Served("n", at, false, "", 0) {
		t.Fatal("nothing stored of a match never delivered: refused")
	}
	tr.Message(d("n", "B", 3))
	step("a delta after 'not started'", "lost n bus", "lost n gap", "delta n B:3")

	// A snapshot of another epoch: to its holders, the first delta is a new stream.
	tr.Lost("m", ReasonBus)
	served(tr, "m", "Z", 7)
	tr.Message(d("m", "A", 46))
	tr.Lost("m", ReasonBus)
	served(tr, "m", "A", 46)
	served(tr, "m", "Y", 2)
	tr.Message(d("m", "A", 47))
	step("snapshots of another epoch", "lost m bus", "lost m epoch", "delta m A:46", "lost m bus", "lost m epoch", "delta m A:47")
	if p, _ := tr.Position("m"); p.Epoch != "A" || p.Older("Z") || p.Older("Y") {
		t.Fatalf("the stream is still A's, and Z and Y are not known to be old: %+v", p)
	}

	// Within a stream, a snapshot served changes nothing: the deltas are gap-checked
	// against the last one delivered.
	if !served(tr, "m", "A", 50) {
		t.Fatal("a snapshot ahead of the stream refused")
	}
	tr.Message(d("m", "A", 48))
	step("no loss", "delta m A:48")
}

func TestTrackerRemembersABoundedNumberOfEpochs(t *testing.T) {
	tr, s := newRec()
	for i := range 3 * retiredEpochs {
		tr.Message(d("m", fmt.Sprint("e", i), 1))
	}
	p, _ := tr.Position("m")
	if len(p.retired) != retiredEpochs {
		t.Fatalf("%d epochs remembered", len(p.retired))
	}
	s.calls = nil
	tr.Message(d("m", fmt.Sprint("e", 3*retiredEpochs-2), 2)) // the one before: old
	if !slices.Equal(s.calls, []string{"dropped m old_epoch"}) {
		t.Fatalf("calls %q", s.calls)
	}
}
