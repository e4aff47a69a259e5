package client

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A gateway that closes every connection right after `hello` must see the client's
// delays grow as for any other failure: `hello` alone resets nothing (PROTOCOL.md,
// client algorithm step 5).
func TestHelloAloneDoesNotResetTheBackoff(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	gw.closeAfterHello = 6
	// Windows: attempt 0-1 the 20 ms spread, then 40, 80, 160, 200 (cap); Rand 0.5 halves them.
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	want := []time.Duration{10, 10, 20, 40, 80, 100}
	for i, w := range want {
		if s := h.waitStatus(t, Reconnecting); s.In != w*time.Millisecond {
			t.Fatalf("reconnect %d after a close right after hello: in %v, want %v ms", i, s.In, w)
		}
	}
	// The seventh connection stays and delivers: a later loss starts from the spread again.
	conn := gw.waitConnN(t, 7)
	h.waitState(t, gw.snap("m1"))
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
	conn.closeWith(websocket.CloseGoingAway)
	if s := h.waitStatus(t, Reconnecting); s.In != 10*time.Millisecond {
		t.Fatalf("after a connection that delivered a delta: in %v, want 10ms", s.In)
	}
}

// A connection that delivers no delta but stays open 30 s also proves the gateway works.
func TestAConnectionOpen30sResetsTheBackoff(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	clk := newFakeClock()
	gw.closeAfterHello = 3
	h := startClientOn(t, gw, clk, nil)
	h.subscribe(t, "m1")
	for _, w := range []time.Duration{10, 10, 20} {
		if s := h.waitStatus(t, Reconnecting); s.In != w*time.Millisecond {
			t.Fatalf("in %v, want %v ms", s.In, w)
		}
	}
	// 29 s open and no delta: not enough.
	conn := gw.waitConnN(t, 4)
	h.waitState(t, gw.snap("m1"))
	clk.Advance(29 * time.Second)
	conn.closeWith(websocket.CloseGoingAway)
	if s := h.waitStatus(t, Reconnecting); s.In != 40*time.Millisecond {
		t.Fatalf("after 29 s without a delta: in %v, want 40ms", s.In)
	}
	conn = gw.waitConnN(t, 5)
	h.waitStatus(t, Live)
	clk.Advance(30 * time.Second)
	conn.closeWith(websocket.CloseGoingAway)
	if s := h.waitStatus(t, Reconnecting); s.In != 10*time.Millisecond {
		t.Fatalf("after 30 s open: in %v, want 10ms (attempts from zero)", s.In)
	}
}
