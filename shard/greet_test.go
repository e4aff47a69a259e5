package shard

import (
	"testing"
	"time"

	"github.com/gobwas/ws"

	"crease/bus"
)

// TestGreetWritesTheHandshakeOnce: the 101 answer and the frames after it leave in one
// write, in order, counted as delivered.
func TestGreetWritesTheHandshakeOnce(t *testing.T) {
	s := newTestShard(t, Options{})
	c, fc := openConn(s, -1, "m1")
	head := []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")
	hello := ControlText([]byte(`{"type":"hello","node":"n","heartbeat_s":20}`))
	rest := s.Greet(c, append(make([]byte, 0, 512), head...), []*Frame{hello, s.SubscribedFrame("m1")})
	if fc.writes != 1 {
		t.Fatalf("%d writes, want 1", fc.writes)
	}
	if len(rest) != 0 || cap(rest) < 512 {
		t.Fatalf("buffer not handed back for reuse: len %d cap %d", len(rest), cap(rest))
	}
	if string(fc.wire[:len(head)]) != string(head) {
		t.Fatalf("wire starts %q", fc.wire[:len(head)])
	}
	fc.wire = fc.wire[len(head):]
	got := fc.frames(t, false)
	if len(got) != 2 || got[0].Op != ws.OpText || got[0].Type != "hello" || got[1].Type != "subscribed" || got[1].Match != "m1" {
		t.Fatalf("frames %+v", got)
	}
	if s.counts[0] != 2 {
		t.Fatalf("control frames counted %d, want 2", s.counts[0])
	}
}

// TestEpochResyncReplacesAQueuedResync: a connection that has a resync of another reason
// queued gets it turned into `resync` reason epoch (a delta of a new epoch may follow
// only that one), once, with the byte counts kept exact.
func TestEpochResyncReplacesAQueuedResync(t *testing.T) {
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: time.Hour, CutLimit: 2 * time.Hour})
	c, _ := blockedConn(t, s, "a")
	s.enqueue(c, deltaFrame(t, "a", 1, "high"))
	s.lostMatch("a", bus.ReasonGap)
	s.lostMatch("a", bus.ReasonEpoch)
	s.lostMatch("a", bus.ReasonEpoch)
	s.lostMatch("a", bus.ReasonBus) // an epoch resync covers this too
	checkAccounting(t, s, c)
	var reasons []bus.ResyncReason
	for _, f := range c.out.state {
		if f.Kind == KindResync {
			reasons = append(reasons, f.Reason)
		}
	}
	if len(reasons) != 1 || reasons[0] != bus.ReasonEpoch {
		t.Fatalf("queued resyncs %v, want one with reason epoch", reasons)
	}
}
