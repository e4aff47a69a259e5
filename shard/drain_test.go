package shard

import (
	"testing"
	"time"

	"crease/wire"
)

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
	clk.advance(100*time.Millisecond - time.Millisecond)
	s.Tick(nil)
	if a.State() != StateOpen {
		t.Fatal("closed before its turn")
	}
	clk.advance(time.Millisecond)
	s.Tick(nil)
	if a.State() != StateClosing || a.reason != wire.ReasonDrain || b.State() != StateOpen {
		t.Fatalf("at 100 ms: states %d %d, want the first closed (drain), the second open", a.State(), b.State())
	}
	clk.advance(200 * time.Millisecond)
	s.Tick(nil)
	if b.State() != StateClosing || c.State() != StateClosing {
		t.Fatalf("at 300 ms: states %d %d, want all closed within 400 ms", b.State(), c.State())
	}
}
