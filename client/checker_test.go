package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// feed drives a Checker by hand, the way a Client would.
type feed struct {
	t *testing.T
	c *Checker
}

func (f feed) subscribed(m string) {
	f.c.Frame([]byte(fmt.Sprintf(`{"type":"subscribed","match":%q}`, m)))
}
func (f feed) resync(m string) {
	f.c.Frame([]byte(fmt.Sprintf(`{"type":"resync","match":%q,"reason":"slow"}`, m)))
}
func (f feed) delta(m string, seq uint64) {
	f.c.Frame([]byte(fmt.Sprintf(`{"type":"delta","match":%q,"seq":%d,"prio":"high","ts":1,"patch":{"n":%d}}`, m, seq, seq)))
}
func (f feed) snapshot(m string, seq uint64) {
	f.c.SnapshotRequested(m)
	f.c.Snapshot(snapAt(m, seq))
}

// subscribedFeed is a feed whose checker has seen `subscribed` for m.
func subscribedFeed(t *testing.T, m string) feed {
	f := feed{t, NewChecker()}
	f.subscribed(m)
	return f
}

func snapAt(m string, seq uint64) Snapshot {
	return Snapshot{Match: m, Seq: seq, State: json.RawMessage(fmt.Sprintf(`{"n":%d}`, seq))}
}

func (f feed) wantViolations(rules ...int) {
	f.t.Helper()
	v := f.c.Violations()
	if len(v) != len(rules) {
		f.t.Fatalf("violations %v, want rules %v", v, rules)
	}
	for i, r := range rules {
		if v[i].Rule != r {
			f.t.Fatalf("violations %v, want rules %v", v, rules)
		}
	}
}

// wantVerified fails unless the checker has seen no violation and the state it rebuilt
// is s.
func (f feed) wantVerified(s Snapshot) {
	f.t.Helper()
	f.wantViolations()
	if err := f.c.Verify(s); err != nil {
		f.t.Fatal(err)
	}
}

// wantNotVerified fails unless Verify(s) is ErrNotVerified, with detail in its text.
func (f feed) wantNotVerified(s Snapshot, detail string) {
	f.t.Helper()
	if err := f.c.Verify(s); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), detail) {
		f.t.Fatalf("Verify(%s seq %d %s) = %v, want ErrNotVerified with %q", s.Match, s.Seq, s.State, err, detail)
	}
}

func TestCheckerInOrderVerifies(t *testing.T) {
	f := feed{t, NewChecker()}
	f.c.Connected()
	f.subscribed("m")
	f.delta("m", 4) // before the snapshot: buffered
	f.snapshot("m", 3)
	f.delta("m", 5)
	f.delta("m", 6)
	f.wantVerified(snapAt("m", 6))
	// Same seq, different state: the publisher and the rebuild disagree.
	bad := Snapshot{Match: "m", Seq: 6, State: json.RawMessage(`{"n":6,"extra":true}`)}
	f.wantNotVerified(bad, "rebuilt state")
	f.wantNotVerified(snapAt("m", 7), "rebuilt seq 6")
	f.wantNotVerified(snapAt("x", 1), "") // unknown match
}

func TestCheckerCatchesOutOfOrderAndDuplicate(t *testing.T) {
	f := subscribedFeed(t, "m")
	f.snapshot("m", 1)
	f.delta("m", 2)
	f.delta("m", 4) // 3 skipped: rule 2
	f.delta("m", 3) // older than 4: rule 1
	f.delta("m", 4) // duplicate: rule 1
	f.wantViolations(2, 1, 1)
	if v := f.c.Violations(); v[1].Seq != 3 || !strings.Contains(v[1].String(), "delta 3 after delta 4") {
		t.Fatalf("violation %v", v[1])
	}
	f.wantNotVerified(snapAt("m", 4), "")
}

func TestCheckerResyncCoversLoss(t *testing.T) {
	f := subscribedFeed(t, "m")
	f.snapshot("m", 1)
	f.delta("m", 2)
	f.resync("m")
	f.delta("m", 3) // sent before the loss
	f.delta("m", 9) // covered: the resync is not answered yet
	f.snapshot("m", 9)
	f.delta("m", 10)
	f.wantVerified(snapAt("m", 10))
	// Once the snapshot answered the resync, a new loss needs a new resync.
	f.delta("m", 12)
	f.wantViolations(2)
	if st := f.c.Stats("m"); st.Resyncs != 1 || st.Gaps != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCheckerCatchesLossRightAfterSnapshot(t *testing.T) {
	// The first delta after a snapshot at 5 must be 6.
	f := subscribedFeed(t, "m")
	f.snapshot("m", 5)
	f.delta("m", 7)
	f.wantViolations(2)

	// The same when the deltas overtake the snapshot answer.
	f = subscribedFeed(t, "m")
	f.c.SnapshotRequested("m")
	f.delta("m", 7)
	f.delta("m", 8)
	f.c.Snapshot(snapAt("m", 5))
	f.wantViolations(2)
	if v := f.c.Violations(); !strings.Contains(v[0].Detail, "first delta above it was 7") {
		t.Fatalf("violation %v", v[0])
	}

	// But deltas from before the snapshot request bind nothing, and neither does a
	// snapshot requested before a resync.
	f = subscribedFeed(t, "m")
	f.delta("m", 20)
	f.c.SnapshotRequested("m")
	f.resync("m")
	f.delta("m", 30)
	f.c.Snapshot(snapAt("m", 25))
	f.delta("m", 40) // still covered: that snapshot does not answer the resync
	f.snapshot("m", 40)
	f.delta("m", 41)
	f.wantVerified(snapAt("m", 41))
}

func TestCheckerNewConnectionStartsOver(t *testing.T) {
	f := feed{t, NewChecker()}
	f.c.Connected()
	f.subscribed("m")
	f.snapshot("m", 1)
	f.delta("m", 2)
	f.delta("m", 3)
	f.c.Connected()
	f.delta("m", 3) // before `subscribed` on the new connection: not counted
	f.subscribed("m")
	f.delta("m", 5) // a new connection may start anywhere before its snapshot
	if err := f.c.Verify(snapAt("m", 5)); err == nil || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("Verify before the new snapshot = %v", err)
	}
	f.snapshot("m", 4)
	f.delta("m", 6)
	f.wantVerified(snapAt("m", 6))
}

// frame feeds any frame text.
func (f feed) frame(format string, args ...any) { f.c.Frame([]byte(fmt.Sprintf(format, args...))) }

func (f feed) edelta(m, epoch string, seq uint64) {
	f.frame(`{"type":"delta","match":%q,"epoch":%q,"seq":%d,"prio":"high","ts":1,"patch":{"n":%d}}`, m, epoch, seq, seq)
}

func esnapAt(m, epoch string, seq uint64) Snapshot {
	s := snapAt(m, seq)
	s.Epoch = epoch
	return s
}

func TestCheckerEpochs(t *testing.T) {
	f := subscribedFeed(t, "m")
	f.c.SnapshotRequested("m")
	f.c.Snapshot(esnapAt("m", "e1", 10))
	f.edelta("m", "e1", 11)
	// A new epoch announced by resync{epoch}: seq 1 after 11 is no step back.
	f.frame(`{"type":"resync","match":"m","reason":"epoch"}`)
	f.edelta("m", "e2", 1)
	f.c.SnapshotRequested("m")
	f.c.Snapshot(esnapAt("m", "e2", 1))
	f.edelta("m", "e2", 2)
	f.wantVerified(esnapAt("m", "e2", 2))
	// Within the new epoch the rules hold as ever: 3 must follow 2.
	f.edelta("m", "e2", 4)
	f.wantViolations(2)
	// A new epoch without its resync breaks rule 1, and so does a resync of another reason.
	f = subscribedFeed(t, "m")
	f.snapshot("m", 0)
	f.edelta("m", "e1", 1)
	f.frame(`{"type":"resync","match":"m","reason":"slow"}`)
	f.edelta("m", "e2", 1)
	f.wantViolations(1)
	if v := f.c.Violations(); !strings.Contains(v[0].Detail, "without resync{epoch}") {
		t.Fatalf("violation %v", v[0])
	}
}

func TestCheckerCatchUpDeltaCoversTheSkippedSeqs(t *testing.T) {
	f := subscribedFeed(t, "m")
	f.snapshot("m", 5)
	f.frame(`{"type":"delta","match":"m","seq":9,"from":4,"prio":"high","ts":1,"patch":{"n":9}}`)
	f.wantVerified(snapAt("m", 9))
	// A from above the last delivered seq leaves a hole.
	f.frame(`{"type":"delta","match":"m","seq":14,"from":10,"prio":"high","ts":1,"patch":{"n":14}}`)
	f.wantViolations(2)
	// The first delta after a snapshot may be a catch-up one reaching back to it.
	f = subscribedFeed(t, "m")
	f.c.SnapshotRequested("m")
	f.frame(`{"type":"delta","match":"m","seq":8,"from":3,"prio":"high","ts":1,"patch":{"n":8}}`)
	f.c.Snapshot(snapAt("m", 5))
	f.wantVerified(snapAt("m", 8))
}

func TestCheckerRecoveredSubscription(t *testing.T) {
	f := feed{t, NewChecker()}
	f.c.Connected()
	f.subscribed("m")
	f.c.SnapshotRequested("m")
	f.c.Snapshot(esnapAt("m", "e", 3))
	f.edelta("m", "e", 4)
	f.c.Connected()
	// The client held e:4 and subscribed with since e:4; the gateway recovered it.
	f.frame(`{"type":"subscribed","match":"m","recovered":true}`)
	f.edelta("m", "e", 5)
	f.edelta("m", "e", 6)
	f.wantVerified(esnapAt("m", "e", 6))
	// A recovered subscription whose replay skips a delta lost it.
	f.c.Connected()
	f.frame(`{"type":"subscribed","match":"m","recovered":true}`)
	f.edelta("m", "e", 8)
	f.wantViolations(2)
	f.c.Snapshot(esnapAt("m", "e", 8)) // the client repairs it from the snapshot
	// ... and one replaying what the client holds repeats it.
	f.c.Connected()
	f.frame(`{"type":"subscribed","match":"m","recovered":true}`)
	f.edelta("m", "e", 8)
	f.wantViolations(2, 1)
}

func TestJSONEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		eq   bool
	}{
		{`{"a":1,"b":[1,2]}`, ` { "b" : [1,2], "a":1.0 }`, true},
		{`{"a":1}`, `{"a":1,"b":null}`, false},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false},
	} {
		if eq, err := JSONEqual([]byte(c.a), []byte(c.b)); err != nil || eq != c.eq {
			t.Errorf("JSONEqual(%s, %s) = %v, %v", c.a, c.b, eq, err)
		}
	}
	if _, err := JSONEqual([]byte(`{`), []byte(`{}`)); err == nil {
		t.Error("JSONEqual of bad JSON must fail")
	}
}
