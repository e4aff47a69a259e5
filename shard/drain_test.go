package shard

import (
	"testing"
	"time"

	"crease/wire"
)

// wantDrainCloseAt moves clk on by d, ticking s 1 ms before and at d: c must still be
// open before, and closing for the drain at d, while every one of open stays open.
func wantDrainCloseAt(t *testing.T, s *Shard, clk *testClock, d time.Duration, c *Conn, open ...*Conn) {
	t.Helper()
	clk.advance(d - time.Millisecond)
	s.Tick(nil)
	if c.State() != StateOpen {
		t.Fatalf("closed before %v, its turn", d)
	}
	clk.advance(time.Millisecond)
	s.Tick(nil)
	if c.State() != StateClosing || c.reason != wire.ReasonDrain {
		t.Fatalf("at %v: state %d, reason %v, want closing for the drain", d, c.State(), c.reason)
	}
	for i, o := range open {
		if o.State() != StateOpen {
			t.Fatalf("at %v: connection %d of those due later is in state %d, want open", d, i, o.State())
		}
	}
}

// A drain for a restart in place: the reconnect hints fall after the gap, spread over
// the window, while the connections are closed within closeWithin, long before.
func TestStartDrainAfterHintsPastTheGapAndClosesEarly(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newTestShard(t, Options{Heartbeat: time.Hour, Now: clk.now})
	a, afc := openConn(s, -1)
	b, bfc := openConn(s, -1)
	c, cfc := openConn(s, -1)
	s.StartDrainAfter(2*time.Second, 4*time.Second, 400*time.Millisecond)
	for i, fc := range []*fakeConn{afc, bfc, cfc} {
		m := fc.frames(t, false)
		// after_ms 2000 + 4000·(i+1)/4: 3000, 4000, 5000
		if want := int64(3000 + 1000*i); len(m) != 1 || m[0].Type != "reconnect" || m[0].After != want {
			t.Fatalf("connection %d: frames %+v, want one reconnect after_ms %d", i, m, want)
		}
	}
	wantDrainCloseAt(t, s, clk, 100*time.Millisecond, a, b)
	clk.advance(200 * time.Millisecond)
	s.Tick(nil)
	if b.State() != StateClosing || c.State() != StateClosing {
		t.Fatalf("at 300 ms: states %d %d, want all closed within 400 ms", b.State(), c.State())
	}
}
