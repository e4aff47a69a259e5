package shard

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"crease/wire"
)

// testClock is a settable Options.Now.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// The op bucket's arithmetic exactly: a burst of OpBurst passes, the next OpBurst-1 are
// refused, then a flood; refusals cost an interval; the sustained rate always passes.
func TestOpBucket(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newTestShard(t, Options{OpRate: 10, OpBurst: 4, Now: clk.now})
	c, _ := openConn(s, -1)
	var got []OpResult
	for range 8 {
		got = append(got, s.AllowOp(c))
	}
	want := []OpResult{OpOK, OpOK, OpOK, OpOK, OpRefused, OpRefused, OpRefused, OpFlood}
	if string(results(got)) != string(results(want)) {
		t.Fatalf("burst: %v, want %v", results(got), results(want))
	}

	// 8 ops at one instant put tat 8 intervals ahead: four intervals later (0.4 s) it is
	// 4 ahead, one more than the burst tolerance (3): still refused; one more passes.
	d := newTestShard(t, Options{OpRate: 10, OpBurst: 4, Now: clk.now})
	c, _ = openConn(d, -1)
	for range 7 {
		d.AllowOp(c)
	}
	clk.advance(300 * time.Millisecond)
	if r := d.AllowOp(c); r != OpRefused {
		t.Fatalf("after 0.3 s: %v, want refused (the refusals cost)", r)
	}
	clk.advance(200 * time.Millisecond)
	if r := d.AllowOp(c); r != OpOK {
		t.Fatalf("after 0.5 s: %v, want ok", r)
	}

	// The sustained rate passes forever, an idle connection gets its whole burst back.
	e := newTestShard(t, Options{OpRate: 10, OpBurst: 4, Now: clk.now})
	c, _ = openConn(e, -1)
	for i := range 1000 {
		clk.advance(100 * time.Millisecond)
		if r := e.AllowOp(c); r != OpOK {
			t.Fatalf("sustained op %d: %v", i, r)
		}
	}
}

// The bucket's 32-bit microsecond stamp survives the clock wrapping it (71 minutes)
// because every sweep moves an idle connection's stamp up to the clock.
func TestOpBucketAcrossTheWrap(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newTestShard(t, Options{OpRate: 10, OpBurst: 4, Heartbeat: time.Hour, Now: clk.now})
	c, fc := openConn(s, -1)
	for range 4 {
		s.AllowOp(c)
	}
	for range 3 * 72 * 60 / 10 { // 3 wraps, swept every 10 s, never idle long enough to close
		clk.advance(10 * time.Second)
		s.Touch(c)
		s.Sweep(nil)
	}
	if c.state != StateOpen || fc.closes != 0 {
		t.Fatalf("closed after %d closes", fc.closes)
	}
	for i := range 4 {
		if r := s.AllowOp(c); r != OpOK {
			t.Fatalf("op %d of a fresh burst after hours: %v", i, r)
		}
	}
	if r := s.AllowOp(c); r != OpRefused {
		t.Fatalf("fifth op: %v, want refused", r)
	}
}

func results(rs []OpResult) []byte {
	b := make([]byte, len(rs))
	for i, r := range rs {
		b[i] = "ORF"[r]
	}
	return b
}

// The idle close and the handshake deadline are never early and at most a quarter
// second (their stamps' resolution) late, whatever the phase of the clock.
func TestIdleAndHandshakeDeadlines(t *testing.T) {
	for _, phase := range []time.Duration{0, time.Millisecond, 249 * time.Millisecond, 250 * time.Millisecond, 999 * time.Millisecond} {
		clk := &testClock{t: time.Unix(1_700_000_000, 0)}
		s := newTestShard(t, Options{Heartbeat: 3 * time.Second, HandshakeTimeout: 2 * time.Second, Now: clk.now})
		clk.advance(phase)
		c, fc := openConn(s, -1)
		hsFC := &fakeConn{room: -1}
		hs := s.Open(hsFC)
		clk.advance(2*time.Second - time.Millisecond)
		s.Sweep(nil)
		if hs.state != StateHandshake {
			t.Fatalf("phase %v: handshake closed before its deadline", phase)
		}
		clk.advance(time.Millisecond + quarter)
		s.Sweep(nil)
		if hs.state != StateClosing || hs.reason != wire.ReasonHandshakeTimeout || hsFC.closes != 1 {
			t.Fatalf("phase %v: handshake not closed a quarter past its deadline (state %d)", phase, hs.state)
		}
		clk.advance(9*time.Second - 2*time.Second - quarter - time.Millisecond)
		s.Sweep(nil)
		if c.state != StateOpen {
			t.Fatalf("phase %v: idle close before 3 heartbeats", phase)
		}
		clk.advance(time.Millisecond + quarter)
		s.Sweep(nil)
		if c.state != StateClosing || c.reason != wire.ReasonIdle {
			t.Fatalf("phase %v: not closed a quarter after 3 heartbeats (state %d)", phase, c.state)
		}
		if m := fc.frames(t, false); len(m) == 0 || m[len(m)-1].Code != 4000 {
			t.Fatalf("phase %v: frames %+v, want a 4000 close last", phase, m)
		}
	}
}

// The loop's own timing runs on Options.Now too: a stalled socket is shed, cut and reset
// by Tick as the clock passes StallLimit, CutLimit and CloseLinger, and a drain closes
// each connection when the clock reaches its after_ms, with no real time passing.
func TestTickPolicesAndDrainsOnTheShardClock(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newTestShard(t, Options{Budget: 1 << 20, StallLimit: 5 * time.Second, CutLimit: 30 * time.Second,
		CloseLinger: 5 * time.Second, Heartbeat: time.Hour, Now: clk.now})
	c, fc := blockedConn(t, s, "m")
	clk.advance(time.Second)
	postAll(s, deltaFrame(t, "m", 1, "high"))
	clk.advance(5*time.Second - time.Millisecond)
	s.Tick(nil)
	if countKind(c.out.state, KindResync) != 0 {
		t.Fatal("shed before the stall limit")
	}
	clk.advance(time.Millisecond)
	s.Tick(nil)
	if countKind(c.out.state, KindResync) != 1 || countKind(c.out.state, KindDelta) != 0 {
		t.Fatal("not shed at the stall limit")
	}
	clk.advance(25 * time.Second)
	s.Tick(nil)
	if c.State() != StateClosing || c.reason != wire.ReasonSlow || fc.closes != 0 {
		t.Fatalf("state %d, reason %v, closes %d: not cut at the cut limit", c.State(), c.reason, fc.closes)
	}
	clk.advance(5 * time.Second)
	s.Tick(nil)
	if fc.closes != 1 || fc.linger == nil || *fc.linger != 0 {
		t.Fatalf("closes %d, linger %v: not reset when the linger ended", fc.closes, fc.linger)
	}

	d := newTestShard(t, Options{Heartbeat: time.Hour, Now: clk.now})
	a, afc := openConn(d, -1)
	b, _ := openConn(d, -1)
	d.StartDrain(3 * time.Second) // after_ms 1000 and 2000
	if m := afc.frames(t, false); len(m) != 1 || m[0].Type != "reconnect" {
		t.Fatalf("frames %+v, want one reconnect", m)
	}
	wantDrainCloseAt(t, d, clk, time.Second, a, b) // at its after_ms
	clk.advance(time.Second)
	d.Tick(nil)
	if b.State() != StateClosing {
		t.Fatal("second connection not closed at its after_ms")
	}
}

// A handshake past its deadline whose request waits unread in the kernel is the loop's
// lateness, not the client's: it is kept for up to one more timeout, then closed all
// the same; one with nothing waiting (a slowloris) is closed at the deadline.
func TestHandshakeDeadlineSparesAnUnreadRequest(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newTestShard(t, Options{HandshakeTimeout: 2 * time.Second, Now: clk.now})
	waiting, silent := &fakeConn{room: -1}, &fakeConn{room: -1}
	s.unread = func(gc gnet.Conn) int {
		if gc == waiting {
			return 180
		}
		return 0
	}
	w, q := s.Open(waiting), s.Open(silent)
	clk.advance(2*time.Second + quarter)
	s.Sweep(nil)
	if q.state != StateClosing || q.reason != wire.ReasonHandshakeTimeout {
		t.Fatalf("a handshake with nothing unread not closed at its deadline (state %d)", q.state)
	}
	if w.state != StateHandshake || waiting.closes != 0 {
		t.Fatalf("a handshake whose request waits unread closed at the deadline (state %d)", w.state)
	}
	clk.advance(2*time.Second - 2*quarter)
	s.Sweep(nil)
	if w.state != StateHandshake {
		t.Fatalf("closed before twice the deadline (state %d)", w.state)
	}
	clk.advance(3 * quarter)
	s.Sweep(nil)
	if w.state != StateClosing || w.reason != wire.ReasonHandshakeTimeout || waiting.closes != 1 {
		t.Fatalf("still open a quarter past twice the deadline with its request unread (state %d)", w.state)
	}
}
