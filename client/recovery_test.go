package client

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// A new epoch announced by resync{epoch}: the snapshot of the new epoch sets the
// position although its seq is far lower, and the deltas of the new epoch follow.
func TestNewEpochAnnouncedByResync(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnapEpoch("m1", "e1", 40, `{"n":40,"old":true}`)
	h, chk, _ := checkedClient(t, gw, "m1")
	if s := h.waitState(t, gw.snap("m1")); s.Epoch != "e1" {
		t.Fatalf("state %+v, want epoch e1", s)
	}
	gw.newEpoch("m1", "e2", true)
	gw.publish("m1", `{"n":1}`, true)
	gw.publish("m1", `{"m":2}`, true)
	s := h.waitStateSeqEpoch(t, gw.snap("m1"))
	if s.Epoch != "e2" || s.Seq != 2 {
		t.Fatalf("state %+v, want e2:2", s)
	}
	if err := chk.Verify(gw.snap("m1")); err != nil {
		t.Fatal(err)
	}
	if gw.dials() != 1 {
		t.Fatalf("%d dials", gw.dials())
	}
}

// A delta of another epoch without a resync is a new stream all the same: the client
// refetches, and the Checker calls the gateway's silence a breach of rule 1.
func TestDeltaOfAnotherEpochRefetches(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnapEpoch("m1", "e1", 9, `{"n":9}`)
	h, chk, _ := checkedClient(t, gw, "m1")
	h.waitState(t, gw.snap("m1"))
	gw.newEpoch("m1", "e2", false)
	gw.publish("m1", `{"n":1}`, true)
	s := h.waitStateSeqEpoch(t, gw.snap("m1"))
	if s.Cause != CauseResync || gw.snapGets.Load() != 2 {
		t.Fatalf("state %+v after %d snapshot GETs, want a resync from the second", s, gw.snapGets.Load())
	}
	gw.publish("m1", `{"n":2}`, true)
	h.waitStateSeqEpoch(t, gw.snap("m1"))
	if v := chk.Violations(); len(v) != 1 || v[0].Rule != 1 {
		t.Fatalf("violations %v, want the unannounced epoch", v)
	}
}

// On reconnect the client subscribes with since = the position it holds; a gateway
// that recovers it replays the missed deltas, and no snapshot is fetched.
func TestReconnectRecoversFromHistory(t *testing.T) {
	gw := newFakeGW(t)
	gw.recovery = true
	gw.setSnapEpoch("m1", "e", 3, `{"n":3}`)
	h, chk, conn := checkedClient(t, gw, "m1")
	if op := conn.nextOp(t); op.Op != "subscribe" || op.Since != nil {
		t.Fatalf("first subscribe %+v, want no since (nothing held)", op)
	}
	h.waitState(t, gw.snap("m1"))
	gw.publish("m1", `{"n":4}`, true)
	h.waitState(t, gw.snap("m1"))
	conn.closeWith(websocket.CloseGoingAway)
	<-conn.closed
	gw.publish("m1", `{"n":5}`, true) // nobody subscribed: only in the history
	gw.publish("m1", `{"n":6,"x":1}`, true)
	conn = gw.waitConn(t)
	op := conn.nextOp(t)
	if op.Op != "subscribe" || op.Since == nil || *op.Since != (sincePos{"e", 4}) {
		t.Fatalf("resubscribe %+v, want since e:4", op)
	}
	h.waitStatus(t, Live)
	s := h.waitStateSeqEpoch(t, gw.snap("m1"))
	if s.Cause != CauseDelta {
		t.Fatalf("state %+v, want the replayed delta", s)
	}
	gw.publish("m1", `{"n":7}`, true)
	h.waitStateSeqEpoch(t, gw.snap("m1"))
	if n := gw.snapGets.Load(); n != 1 {
		t.Fatalf("%d snapshot GETs, want 1: the reconnect recovered", n)
	}
	if err := chk.Verify(gw.snap("m1")); err != nil {
		t.Fatal(err)
	}
	if st := chk.Stats("m1"); st.Resumes != 1 {
		t.Fatalf("checker stats %+v", st)
	}
}

// A gateway that cannot recover (history gone, or another epoch) answers
// recovered:false: the snapshot route, as ever.
func TestReconnectNotRecoveredTakesTheSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(gw *fakeGW)
	}{
		{"history gone", func(gw *fakeGW) {
			gw.publish("m1", `{"n":5}`, true)
			gw.forgetHistory("m1")
			gw.publish("m1", `{"n":6}`, true)
		}},
		{"new epoch", func(gw *fakeGW) {
			gw.newEpoch("m1", "f", false)
			gw.publish("m1", `{"n":1}`, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := newFakeGW(t)
			gw.recovery = true
			gw.setSnapEpoch("m1", "e", 4, `{"n":4}`)
			h, chk, conn := checkedClient(t, gw, "m1")
			h.waitState(t, gw.snap("m1"))
			conn.closeWith(websocket.CloseGoingAway)
			<-conn.closed
			tc.after(gw)
			conn = gw.waitConn(t)
			if op := conn.nextOp(t); op.Since == nil || *op.Since != (sincePos{"e", 4}) {
				t.Fatalf("resubscribe %+v, want since e:4", op)
			}
			s := h.waitStateSeqEpoch(t, gw.snap("m1"))
			if s.Cause != CauseResync || gw.snapGets.Load() != 2 {
				t.Fatalf("state %+v after %d GETs; want a snapshot", s, gw.snapGets.Load())
			}
			if err := chk.Verify(gw.snap("m1")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without an epoch (a version 1 gateway) there is nothing to recover from: no since.
func TestVersion1GatewayGetsNoSince(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 2, `{"n":2}`)
	h, conn := liveClient(t, gw, "m1", nil)
	conn.closeWith(websocket.CloseGoingAway)
	conn = gw.waitConn(t)
	if op := conn.nextOp(t); op.Op != "subscribe" || op.Since != nil {
		t.Fatalf("resubscribe %+v, want no since", op)
	}
	h.waitState(t, gw.snap("m1"))
}

// CatchUp opts in with ?catchup=1; a catch-up delta applies when the held seq is within
// [from, seq-1], and one reaching back less far is a gap.
func TestCatchUpDeltas(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnapEpoch("m1", "e", 10, `{"n":10,"a":1}`)
	chk := NewChecker()
	h := startClient(t, gw, func(o *Options) {
		o.CatchUp = true
		o.Observer = chk
		o.URL += "?match=m1"
	})
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	u := gw.dialURLs[0]
	gw.mu.Unlock()
	if !strings.Contains(u, "catchup=1") || !strings.Contains(u, "match=m1") {
		t.Fatalf("dialled %s, want catchup=1 beside the match", u)
	}
	// The gateway composed 11..14 into one delta from 10.
	for i := 11; i <= 14; i++ {
		gw.publish("m1", fmt.Sprintf(`{"n":%d,"a":null}`, i), false)
	}
	conn.send(`{"type":"delta","match":"m1","epoch":"e","seq":14,"from":10,"prio":"high","ts":1,"patch":{"n":14,"a":null}}`)
	s := h.waitStateSeqEpoch(t, gw.snap("m1"))
	if s.Cause != CauseDelta || gw.snapGets.Load() != 1 {
		t.Fatalf("state %+v after %d GETs; want the catch-up delta applied", s, gw.snapGets.Load())
	}
	// from 16 does not reach back to 14: a gap.
	gw.publish("m1", `{"n":15}`, false)
	gw.publish("m1", `{"n":16}`, false)
	gw.publish("m1", `{"n":17}`, false)
	conn.send(`{"type":"delta","match":"m1","epoch":"e","seq":17,"from":16,"prio":"high","ts":1,"patch":{"n":17}}`)
	s = h.waitStateSeqEpoch(t, gw.snap("m1"))
	if s.Cause != CauseResync || gw.snapGets.Load() != 2 {
		t.Fatalf("state %+v after %d GETs; want a refetch", s, gw.snapGets.Load())
	}
	if st := chk.Stats("m1"); st.CatchUps != 1 {
		t.Fatalf("checker stats %+v", st)
	}
}
