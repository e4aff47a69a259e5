package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"crease/bench/internal/report"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := decodeJSON([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// TestMergePatchRFC7396 runs the examples of RFC 7396, appendix A.
func TestMergePatchRFC7396(t *testing.T) {
	for _, tc := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	} {
		got, _ := json.Marshal(mergePatch(decode(t, tc.target), decode(t, tc.patch)))
		want, _ := json.Marshal(decode(t, tc.want))
		if string(got) != string(want) {
			t.Errorf("merge %s with %s = %s, want %s", tc.target, tc.patch, got, want)
		}
	}
}

func frame(seq uint64, patch string) []byte {
	return fmt.Appendf(nil, `{"type":"delta","match":"m","seq":%d,"prio":"normal","ts":1,"patch":%s}`, seq, patch)
}

// TestRefAdoptsASnapshotBehindTheDeltas: deltas seen before the first snapshot are
// kept, so a snapshot older than them is brought up to the newest.
func TestRefAdoptsASnapshotBehindTheDeltas(t *testing.T) {
	r := newMatchRef()
	for seq, p := range map[uint64]string{5: `{"runs":5}`, 6: `{"runs":6,"over":"1.0"}`} {
		f := frame(seq, p)
		if r.delta(seqKey{0, seq}, bytesHash(f), f) {
			t.Fatal("first frame of a seq reported divergent")
		}
	}
	st := decode(t, `{"runs":4,"team":"IND"}`)
	if r.snapshot(seqKey{0, 4}, st, canonHash(st)) {
		t.Fatal("first snapshot reported a mismatch")
	}
	want := canonHash(decode(t, `{"runs":6,"over":"1.0","team":"IND"}`))
	if h, ok := r.stateAt(seqKey{0, 6}); !ok || h != want {
		t.Fatalf("state at 6: %x %v, want %x", h, ok, want)
	}
	// A later snapshot of seq 6 agrees; one with another state does not.
	if r.snapshot(seqKey{0, 6}, decode(t, `{"team":"IND","over":"1.0","runs":6}`), want) {
		t.Error("an equal snapshot (keys in another order) reported a mismatch")
	}
	bad := decode(t, `{"runs":7,"over":"1.0","team":"IND"}`)
	if !r.snapshot(seqKey{0, 6}, bad, canonHash(bad)) {
		t.Error("a snapshot with another state at the same seq was not reported")
	}
	other := frame(6, `{"runs":60}`)
	if !r.delta(seqKey{0, 6}, bytesHash(other), other) {
		t.Error("another frame for seq 6 was not reported divergent")
	}
}

// testWorker is a worker of a loadgen checking the client algorithm, whose snapshot
// requests stay queued for the test to answer.
func testWorker() (*worker, *conn) {
	lg := &loadgen{cfg: config{matches: []string{"m"}}, refs: map[string]*matchRef{},
		snaps: &snapshotter{queue: make(chan snapReq, 16)}}
	w := &worker{lg: lg, open: map[*conn]uint32{}, hist: report.NewHist(), win: report.NewHist(), snapq: make(chan snapResult, 16)}
	c := &conn{state: stOpen, gen: 1}
	w.open[c] = c.gen
	return w, c
}

// answer takes the one queued snapshot request and answers it with seq and state.
func answer(t *testing.T, w *worker, seq uint64, state string) {
	t.Helper()
	if n := len(w.lg.snaps.queue); n > 1 {
		t.Fatalf("%d snapshot requests queued before answering seq %d, want 1", n, seq)
	}
	select {
	case r := <-w.lg.snaps.queue:
		st := decode(t, state)
		w.chainSnapshot(snapResult{c: r.c, gen: r.gen, sub: r.sub, seq: seq, state: st, hash: canonHash(st)})
	default:
		t.Fatal("no snapshot request queued")
	}
}

// TestSubscriptionFollowsTheAlgorithm walks one subscription through PROTOCOL.md's
// client algorithm and checks what each step counts.
func TestSubscriptionFollowsTheAlgorithm(t *testing.T) {
	w, c := testWorker()
	w.message(c, []byte(`{"type":"subscribed","match":"m"}`), 1)
	// Deltas 11 and 12 arrive before the snapshot (seq 11) is answered.
	w.message(c, frame(11, `{"runs":11}`), 1)
	w.message(c, frame(12, `{"runs":12}`), 1)
	answer(t, w, 11, `{"runs":11}`)
	s := &c.subs[0]
	if s.waiting || s.last.seq != 12 {
		t.Fatalf("after the snapshot: waiting %v, last %d; want live at 12", s.waiting, s.last.seq)
	}
	w.message(c, frame(13, `{"runs":13}`), 1)
	w.message(c, frame(13, `{"runs":13}`), 1) // a duplicate: rule 1
	if d := w.st.dups.Load(); d != 1 {
		t.Errorf("dups %d, want 1", d)
	}
	w.message(c, frame(15, `{"runs":15}`), 1) // a gap without resync: rule 2
	if g := w.st.gaps.Load(); g != 1 {
		t.Errorf("gaps %d, want 1", g)
	}
	answer(t, w, 15, `{"runs":15}`) // the algorithm took the gap as a resync
	if s.waiting || s.last.seq != 15 {
		t.Fatalf("after the refetch: waiting %v, last %d", s.waiting, s.last.seq)
	}
	// A resync covers the gap that follows it.
	w.message(c, []byte(`{"type":"resync","match":"m","reason":"slow"}`), 1)
	w.message(c, frame(19, `{"runs":19}`), 1)
	if g := w.st.gaps.Load(); g != 1 {
		t.Errorf("gaps %d after a resync, want still 1", g)
	}
	// A snapshot older than the deltas buffered is fetched again.
	answer(t, w, 17, `{"runs":17}`)
	if r := w.chain.refetches.Load(); r != 1 || !s.waiting {
		t.Fatalf("refetches %d, waiting %v: want a refetch", r, s.waiting)
	}
	answer(t, w, 19, `{"runs":19}`)
	if s.waiting || s.last.seq != 19 {
		t.Fatalf("after the resync: waiting %v, last %d", s.waiting, s.last.seq)
	}
	if n := len(w.lg.snaps.queue); n != 0 {
		t.Fatalf("%d snapshot requests left, want none", n)
	}
	w.recountFinal(seqKey{0, 19})
	if e := w.chain.equal.Load(); e != 1 {
		t.Errorf("equal %d at the final seq, want 1", e)
	}
	w.recountFinal(seqKey{0, 20})
	if b := w.chain.behind.Load(); b != 1 {
		t.Errorf("behind %d before the final seq, want 1", b)
	}
	if m := w.chain.mismatch.Load(); m != 0 {
		t.Errorf("snapshot mismatches %d, want 0", m)
	}
	// The reference applied 12, 13 and 15 on top of the first snapshot, and knows 19
	// only from its snapshot: the state at 19 is known.
	if _, ok := s.ref.stateAt(seqKey{0, 19}); !ok {
		t.Error("reference does not know the state at 19")
	}
}

// TestSnapshotAnswerForAClosedConnectionIsDropped: an answer that arrives after its
// connection closed and reopened is not applied to the new subscription.
func TestSnapshotAnswerForAClosedConnectionIsDropped(t *testing.T) {
	w, c := testWorker()
	w.message(c, []byte(`{"type":"subscribed","match":"m"}`), 1)
	r := <-w.lg.snaps.queue
	c.gen++
	w.open[c] = c.gen
	w.snapq <- snapResult{c: r.c, gen: r.gen, sub: r.sub, seq: 3}
	w.housekeeping()
	if !c.subs[0].waiting {
		t.Fatal("an answer for an earlier connection was applied")
	}
}

func TestSetCookie(t *testing.T) {
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nset-cookie: SRV=gw3; path=/; HttpOnly\r\nConnection: Upgrade"
	if got := setCookie([]byte(head)); got != "SRV=gw3" {
		t.Errorf("setCookie = %q", got)
	}
	if got := setCookie([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket")); got != "" {
		t.Errorf("setCookie without the header = %q", got)
	}
}

// TestEpochKeysAgree: a frame's epoch and a snapshot's epoch name the same key, a
// string epoch (PROTOCOL.md) or a number; no epoch is 0.
func TestEpochKeysAgree(t *testing.T) {
	for _, tc := range []struct{ frame, snap string }{
		{`{"type":"delta","match":"m","epoch":"k3x9","seq":4,"patch":{"epoch":"other"}}`, `{"match":"m","epoch":"k3x9","seq":4,"state":{}}`},
		{`{"type":"delta","match":"m","epoch":7,"seq":4,"patch":{}}`, `{"match":"m","epoch":7,"seq":4,"state":{}}`},
		{`{"type":"delta","match":"m","seq":4,"patch":{"epoch":"x"}}`, `{"match":"m","seq":4,"state":{}}`},
	} {
		s, err := parseSnapshot([]byte(tc.snap))
		if err != nil {
			t.Fatalf("%s: %v", tc.snap, err)
		}
		if got := epochOf([]byte(tc.frame)); got != s.epoch {
			t.Errorf("frame %s: epoch key %x, snapshot %s: %x", tc.frame, got, tc.snap, s.epoch)
		}
	}
	if epochOf([]byte(`{"type":"delta","seq":1,"patch":{}}`)) != 0 {
		t.Error("no epoch is not key 0")
	}
	if epochOf([]byte(`{"epoch":"a","patch":{}}`)) == epochOf([]byte(`{"epoch":"b","patch":{}}`)) {
		t.Error("two epochs share a key")
	}
}

func TestObjectAfter(t *testing.T) {
	line := []byte(`{"push":{"channel":"m","pub":{"data":{"type":"delta","text":"a } \" {","patch":{"x":{}}},"offset":3}}}`)
	want := `{"type":"delta","text":"a } \" {","patch":{"x":{}}}`
	if got := string(objectAfter(line, `"data":`)); got != want {
		t.Errorf("objectAfter = %s, want %s", got, want)
	}
	if objectAfter([]byte(`{"data":{"a":1`), `"data":`) != nil {
		t.Error("a cut object was returned")
	}
}

// TestAsksNeverBlockTheWorker: with the snapshot queue full, a new subscription's request
// waits on the worker (which goes on reading its sockets) and reaches the queue once there
// is room; that of a connection closed meanwhile is dropped.
func TestAsksNeverBlockTheWorker(t *testing.T) {
	w, c := testWorker()
	for range cap(w.lg.snaps.queue) {
		w.lg.snaps.queue <- snapReq{}
	}
	gone := &conn{state: stOpen, gen: 1}
	w.open[gone] = gone.gen
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.message(gone, []byte(`{"type":"subscribed","match":"m"}`), 1)
		w.message(c, []byte(`{"type":"subscribed","match":"m"}`), 1)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker blocked on the full snapshot queue")
	}
	if len(w.asks) != 2 {
		t.Fatalf("%d requests kept, want 2", len(w.asks))
	}
	delete(w.open, gone) // closed before its request left
	w.flushAsks()
	if len(w.asks) != 1 || w.asks[0].c != c {
		t.Fatalf("%d requests kept with the queue still full, want 1 (that of the open connection)", len(w.asks))
	}
	for range cap(w.lg.snaps.queue) {
		<-w.lg.snaps.queue
	}
	w.flushAsks()
	if len(w.asks) != 0 || len(w.lg.snaps.queue) != 1 {
		t.Fatalf("after room: %d kept, %d queued; want 0 and 1", len(w.asks), len(w.lg.snaps.queue))
	}
	answer(t, w, 3, `{"runs":3}`)
	if s := &c.subs[0]; s.waiting || s.last.seq != 3 {
		t.Fatalf("after the answer: waiting %v, last %d; want live at 3", s.waiting, s.last.seq)
	}
}
