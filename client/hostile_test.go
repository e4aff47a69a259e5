package client

import (
	"fmt"
	"math"
	"testing"
	"time"

	"crease/server/servertest"
)

// What a buggy or hostile gateway sends must never drive the client into a tight loop,
// a freeze or a wrong state.

// A gateway that answers every connection with reconnect{after_ms:0} is dialed at a
// growing interval: a connection that proved nothing counts as an attempt.
func TestReconnectFramesAfterNothingBackOff(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h := startClient(t, gw, nil) // Backoff 10 ms base, 200 ms cap; Rand 0.5
	h.subscribe(t, "m1")
	for i := range 6 {
		conn := gw.waitConn(t)
		conn.send(`{"type":"reconnect","after_ms":0}`)
		want := min(200*time.Millisecond, 10*time.Millisecond<<i) / 2
		if s := h.waitStatus(t, Reconnecting); s.In != want {
			t.Fatalf("reconnect %d after a connection without a delta: reconnecting in %v, want %v", i, s.In, want)
		}
	}
	// A connection that delivered a delta is a good one: its reconnect's after_ms alone.
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "m1")
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
	conn.send(`{"type":"reconnect","after_ms":70}`)
	if s := h.waitStatus(t, Reconnecting); s.In != 70*time.Millisecond {
		t.Fatalf("reconnect after a delta: in %v, want the 70 ms asked", s.In)
	}
}

// after_ms is taken within [0, 5 min], whatever the gateway sends: 1e13 ms overflowed
// time.Duration into an immediate redial, and a fraction made the frame unreadable.
func TestReconnectAfterIsBounded(t *testing.T) {
	for ms, want := range map[float64]time.Duration{
		0: 0, -5000: 0, math.NaN(): 0, 1500.5: 1500500 * time.Microsecond,
		300_000: 5 * time.Minute, 1e13: 5 * time.Minute, math.Inf(1): 5 * time.Minute,
	} {
		if got := reconnectAfter(ms); got != want {
			t.Errorf("reconnectAfter(%v) = %v, want %v", ms, got, want)
		}
	}
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, conn := liveClient(t, gw, "m1", func(o *Options) { o.Rand = func() float64 { return 0 } })
	conn.send(`{"type":"reconnect","after_ms":1e13}`)
	if s := h.waitStatus(t, Reconnecting); s.In != 5*time.Minute {
		t.Fatalf("reconnect{after_ms:1e13}: in %v, want 5m", s.In)
	}
}

// hello's heartbeat_s sets the dead-link deadline: missing, zero or absurd values take
// the default, and it never overflows.
func TestHeartbeatIsBounded(t *testing.T) {
	for s, want := range map[float64]time.Duration{
		20: 20 * time.Second, 0.5: 500 * time.Millisecond, 0: 20 * time.Second, -1: 20 * time.Second,
		math.NaN(): 20 * time.Second, math.Inf(1): 20 * time.Second, 1e300: time.Hour, 7200: time.Hour,
	} {
		if got := heartbeat(s); got != want {
			t.Errorf("heartbeat(%v) = %v, want %v", s, got, want)
		}
	}
}

// A member this client does not read, of any type, does not make a frame unreadable:
// a delta with a newer gateway's "node" object and a "message" number is applied.
func TestForeignMembersAreIgnored(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, conn := liveClient(t, gw, "m1", nil)
	conn.send(`{"type":"delta","match":"m1","seq":2,"prio":"high","ts":1,"patch":{"n":2},"node":{"id":"gw-7"},"message":7,"code":[1],"recovered":"yes"}`)
	st := h.waitState(t, Snapshot{Match: "m1", Seq: 2, State: []byte(`{"n":2}`)})
	if st.Seq != 2 {
		t.Fatalf("state %+v", st)
	}
}

// A delta of a subscribed match that cannot be read (seq as a string) is a lost delta:
// the client takes the snapshot route instead of going on as if nothing had come.
func TestUnreadableDeltaIsAGap(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, conn := liveClient(t, gw, "m1", nil)
	gets := gw.snapGets.Load()
	gw.publish("m1", `{"n":2}`, false) // the store has seq 2; the frame below is its garbled copy
	conn.send(`{"type":"delta","match":"m1","seq":"2","prio":"high","ts":1,"patch":{"n":2}}`)
	h.waitState(t, gw.snap("m1"))
	if gw.snapGets.Load() == gets {
		t.Fatal("state moved without a snapshot")
	}
}

// resync after resync, with no delta between, is answered by snapshot requests at a
// growing interval (not at the endpoint's round-trip rate): the same for a snapshot of
// another epoch than the deltas, which refetches on every delta.
func TestResyncStormIsPaced(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	_, conn := liveClient(t, gw, "m1", nil) // Backoff 10 ms base, 200 ms cap; Rand 0.5
	const rounds = 7
	for i := range rounds {
		before := gw.snapGets.Load()
		conn.send(`{"type":"resync","match":"m1","reason":"slow"}`)
		servertest.Eventually(t, 5*time.Second, func() error {
			if gw.snapGets.Load() == before {
				return fmt.Errorf("resync %d: no snapshot request yet", i)
			}
			return nil
		})
	}
	gw.mu.Lock()
	times := append([]time.Time(nil), gw.snapTimes...)
	gw.mu.Unlock()
	// times[0] is the subscribe's snapshot; the k-th resync's request waits at least
	// Rand·retryWindow(min(k-1, 3)) after the snapshot before it landed: the interval
	// grows, up to Base·2³ (a slow consumer whose deltas all become resyncs still gets
	// a fresh state every few seconds).
	for k := 1; k < len(times); k++ {
		want := min(200*time.Millisecond, 10*time.Millisecond<<min(k-1, maxLandedDoublings)) / 2
		if gap := times[k].Sub(times[k-1]); gap < want {
			t.Errorf("snapshot request %d came %v after the one before, want at least %v", k, gap, want)
		}
	}
	if len(times) != rounds+1 {
		t.Fatalf("%d snapshot requests for %d resyncs and the subscribe", len(times), rounds)
	}
}
