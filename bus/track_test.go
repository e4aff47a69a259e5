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
		d("m", "", 10),  // a frame without epoch continues the stream
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
		"delta m :10",
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

func TestTrackerServedAndForget(t *testing.T) {
	tr, s := newRec()
	tr.Served("m", "A") // untracked: nothing
	if _, ok := tr.Position("m"); ok {
		t.Fatal("Served made a record")
	}
	tr.Lost("m", ReasonBus)
	tr.Served("m", "A") // subscribers hold A's snapshot
	tr.Message(d("m", "B", 1))
	tr.Served("m", "C") // only deltas move the stream on
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
