package client

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"crease/server/servertest"

	"github.com/gorilla/websocket"
)

func TestNewValidatesAndFillsDefaults(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want error
	}{
		{Options{}, ErrNoURL},
		{Options{URL: "http://h:8080/ws"}, ErrBadURL},
		{Options{URL: "ws://h/ws", BaseHTTP: "ftp://h"}, ErrBadBaseHTTP},
		{Options{URL: "ws://h/ws", Backoff: Backoff{Base: time.Minute}}, ErrBadBackoff},
		{Options{URL: "ws://h/ws", Backoff: Backoff{Base: -1}}, ErrBadBackoff},
	} {
		if _, err := New(c.opts); !errors.Is(err, c.want) {
			t.Errorf("New(%+v) = %v, want %v", c.opts, err, c.want)
		}
	}
	c, err := New(Options{URL: "wss://scores.example:8080/ws"})
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options()
	if got := o.SnapshotURL("m1"); got != "https://scores.example:8081/v1/matches/m1" {
		t.Errorf("default snapshot URL %q", got)
	}
	if o.Backoff != (Backoff{DefaultBackoffBase, DefaultBackoffCap, DefaultInitialSpread}) {
		t.Errorf("default backoff %+v", o.Backoff)
	}
	if o.HTTPClient == nil || o.Dialer == nil || o.Rand == nil || o.Logger == nil {
		t.Error("defaults not filled in")
	}
	if o.Logger != slog.Default() {
		t.Error("nil Logger: want slog.Default(), as the gateway and the bus")
	}
	// A cap under the default spread bounds the spread too, as in the browser client.
	c, _ = New(Options{URL: "ws://h/ws", Backoff: Backoff{Cap: time.Second}})
	if w := c.Options().Backoff.Window(0); w != time.Second {
		t.Errorf("window with a 1 s cap: %v", w)
	}
	c, _ = New(Options{URL: "ws://[::1]/ws", BaseHTTP: "http://x:9/"})
	if got := c.Options().SnapshotURL("a_b-1"); got != "http://x:9/v1/matches/a_b-1" {
		t.Errorf("BaseHTTP snapshot URL %q", got)
	}
	if _, err := c.Subscribe("bad id", func(State) {}); !errors.Is(err, ErrBadMatchID) {
		t.Errorf("Subscribe(bad id) = %v", err)
	}
	if _, err := c.Subscribe("m1", nil); !errors.Is(err, ErrNilCallback) {
		t.Errorf("Subscribe(nil) = %v", err)
	}
}

func TestSubscribeConvergesToSnapshot(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 3, `{"score":{"runs":10,"wickets":0},"over":"1.2"}`)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "m1")
	first := h.waitState(t, gw.snap("m1"))
	if first.Cause != CauseSnapshot {
		t.Fatalf("first state cause %v", first.Cause)
	}
	h.waitStatus(t, Live)
	gw.publish("m1", `{"score":{"runs":14},"over":"1.3"}`, true)
	gw.publish("m1", `{"score":{"wickets":1},"over":null}`, true)
	s := h.waitState(t, gw.snap("m1"))
	if s.Cause != CauseDelta || s.Seq != 5 {
		t.Fatalf("state %+v", s)
	}
	mustEqualJSON(t, string(s.JSON), `{"score":{"runs":14,"wickets":1}}`)
	if n := gw.snapGets.Load(); n != 1 {
		t.Fatalf("%d snapshot fetches, want 1", n)
	}

	// A second subscriber of a live match gets the current state at once.
	got := make(chan State, 1)
	unsub, err := h.c.Subscribe("m1", func(s State) { got <- s })
	if err != nil {
		t.Fatal(err)
	}
	if s := recv(t, got, "second subscriber got nothing"); s.Seq != 5 || s.Cause != CauseSnapshot {
		t.Fatalf("second subscriber got %+v", s)
	}
	unsub()
	// The first subscriber remains: no unsubscribe yet. A match not started is 404: no
	// state, but the client is live and takes seq 1 when it comes.
	unsub2 := h.subscribe(t, "m2")
	conn.waitOp(t, "subscribe", "m2")
	h.waitStatus(t, Live)
	gw.publish("m2", `{"toss":"won"}`, true)
	h.waitState(t, gw.snap("m2"))
	unsub2()
	conn.waitOp(t, "unsubscribe", "m2")
}

func TestBufferedDeltasDuringFetchAreApplied(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 3, `{"runs":3}`)
	obs := &frameObserver{Checker: NewChecker(), frames: make(chan []byte, 64)}
	gw.setAfterSnap(func(match string) {
		// The snapshot (seq 3) is read; deltas 4 and 5 now reach the client before it.
		gw.publish(match, `{"runs":4}`, true)
		gw.publish(match, `{"runs":5}`, true)
		for {
			select {
			case raw := <-obs.frames:
				if strings.Contains(string(raw), `"seq":5`) {
					return
				}
			case <-time.After(5 * time.Second):
				t.Error("the client never saw delta 5")
				return
			}
		}
	})
	h := startClient(t, gw, func(o *Options) { o.Observer = obs })
	h.subscribe(t, "m1")
	s := <-h.states
	if s.Seq != 5 || s.Cause != CauseSnapshot {
		t.Fatalf("first state %+v, want seq 5 from the snapshot plus the buffered deltas", s)
	}
	mustEqualJSON(t, string(s.JSON), `{"runs":5}`)
	if st := obs.Stats("m1"); st.Buffered != 2 || st.Applied != 2 {
		t.Fatalf("checker stream stats %+v", st)
	}
	if err := obs.Verify(gw.snap("m1")); err != nil {
		t.Fatal(err)
	}
}

func TestGapRefetchesWithoutReconnecting(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, chk, _ := checkedClient(t, gw, "m1")
	h.waitState(t, gw.snap("m1"))
	gw.publish("m1", `{"n":2}`, false) // lost silently: the gateway breaks rule 2
	gw.publish("m1", `{"n":3}`, true)
	s := h.waitState(t, gw.snap("m1"))
	if s.Cause != CauseResync {
		t.Fatalf("state after the gap %+v", s)
	}
	if gw.dials() != 1 || gw.snapGets.Load() != 2 {
		t.Fatalf("%d dials, %d snapshot fetches; want 1 and 2", gw.dials(), gw.snapGets.Load())
	}
	v := chk.Violations()
	if len(v) != 1 || v[0].Rule != 2 || v[0].Seq != 3 {
		t.Fatalf("violations %v, want the silent drop of 2", v)
	}
	// The state is right (the client repaired it), but the gateway broke the contract.
	if err := chk.Verify(gw.snap("m1")); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "rule 2") {
		t.Fatalf("Verify = %v", err)
	}
}

func TestResyncFrameRefetchesWithoutReconnecting(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 7, `{"n":7}`)
	h, chk, conn := checkedClient(t, gw, "m1")
	h.waitState(t, gw.snap("m1"))
	gw.publish("m1", `{"n":8}`, false)
	gw.publish("m1", `{"n":9}`, false)
	conn.send(`{"type":"resync","match":"m1","reason":"slow"}`)
	s := h.waitState(t, gw.snap("m1"))
	if s.Cause != CauseResync {
		t.Fatalf("state after resync %+v", s)
	}
	gw.publish("m1", `{"n":10}`, true)
	h.waitState(t, gw.snap("m1"))
	if gw.dials() != 1 || gw.snapGets.Load() != 2 {
		t.Fatalf("%d dials, %d snapshot fetches; want 1 and 2", gw.dials(), gw.snapGets.Load())
	}
	if err := chk.Verify(gw.snap("m1")); err != nil {
		t.Fatalf("a covered loss must verify: %v", err)
	}
}

func TestReconnectsWithJitteredBackoffAndResubscribes(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	chk := NewChecker()
	// Windows: attempt 0-2 the 100 ms spread, then 160, 200 (cap); Rand 0.5 halves them.
	h := startClient(t, gw, func(o *Options) {
		o.Backoff = Backoff{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond, InitialSpread: 100 * time.Millisecond}
		o.Observer = chk
	})
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	gw.refuse = 4 // the next 4 dials get 503
	gw.mu.Unlock()
	closedAt := time.Now()
	conn.closeWith(websocket.CloseGoingAway)
	gw.publish("m1", `{"n":2}`, true) // published while disconnected
	want := []time.Duration{50, 50, 50, 80, 100}
	for i, w := range want {
		s := h.waitStatus(t, Reconnecting)
		if s.In != w*time.Millisecond || s.Err == nil {
			t.Fatalf("reconnect %d: %+v, want in %v ms with the cause", i, s, w)
		}
	}
	conn = gw.waitConn(t)
	conn.waitOp(t, "subscribe", "m1")
	h.waitState(t, gw.snap("m1"))
	// Each dial came no sooner than its delay after the previous failure.
	if n := gw.dials(); n != 6 {
		t.Fatalf("%d dials, want 6", n)
	}
	prev := closedAt
	for i, w := range want {
		at := gw.dialTime(i + 1)
		if gap := at.Sub(prev); gap < w*time.Millisecond {
			t.Fatalf("dial %d came %v after the failure, before its delay %v ms", i+1, gap, w)
		}
		prev = at
	}
	if total := gw.dialTime(5).Sub(closedAt); total > 3*time.Second {
		t.Fatalf("reconnecting took %v", total)
	}
	gw.publish("m1", `{"n":3}`, true)
	h.waitState(t, gw.snap("m1"))
	if err := chk.Verify(gw.snap("m1")); err != nil {
		t.Fatal(err)
	}
	// A connection that delivered a delta resets the attempts: the next loss starts from
	// the spread again.
	conn.closeWith(websocket.CloseGoingAway)
	if s := h.waitStatus(t, Reconnecting); s.In != 50*time.Millisecond {
		t.Fatalf("after a good connection: %+v", s)
	}
}

func TestReconnectFrameIsObeyed(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, conn := liveClient(t, gw, "m1", func(o *Options) { o.Rand = func() float64 { return 0 } })
	sent := time.Now()
	conn.send(`{"type":"reconnect","after_ms":300}`)
	if s := h.waitStatus(t, Reconnecting); s.In != 300*time.Millisecond {
		t.Fatalf("status %+v, want reconnecting in 300ms", s)
	}
	<-conn.closed
	if conn.closeCode != websocket.CloseNormalClosure {
		t.Fatalf("client closed with %d, want 1000", conn.closeCode)
	}
	conn = gw.waitConn(t)
	if waited := gw.dialTime(1).Sub(sent); waited < 300*time.Millisecond {
		t.Fatalf("dialed %v after reconnect{after_ms:300}", waited)
	}
	conn.waitOp(t, "subscribe", "m1")
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
}

func TestCancelStopsRunAndClosesTheSocket(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h, conn := liveClient(t, gw, "m1", nil)
	start := time.Now()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %v to stop", d)
	}
	select {
	case <-conn.closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the socket stayed open")
	}
	if conn.closeCode != websocket.CloseNormalClosure {
		t.Fatalf("close code %d, want 1000", conn.closeCode)
	}
	h.waitStatus(t, Closed)
	// Run may run again after it returned; a second concurrent Run is refused.
}

func TestErrorAndEventFramesAreSurfaced(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h := startClient(t, gw, nil)
	errs := make(chan *ServerError, 4)
	events := make(chan string, 4)
	h.c.OnError(func(e *ServerError) { errs <- e })
	h.c.OnEvent(func(match string, raw []byte) { events <- match + " " + string(raw) })
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	conn.send(`{"type":"error","code":"too_many_subscriptions","message":"limit 16"}`)
	if e := recv(t, errs, "error frame not surfaced"); e.Code != "too_many_subscriptions" || e.Message != "limit 16" || !strings.Contains(e.Error(), "too_many_subscriptions") {
		t.Fatalf("error %+v", e)
	}
	conn.send(`{"type":"event","match":"other","prio":"low","ts":1,"kind":"comment"}`) // not subscribed
	ev := `{"type":"event","match":"m1","prio":"low","ts":2,"kind":"comment","text":"FOUR"}`
	conn.send(ev)
	if got := recv(t, events, "event not surfaced"); got != "m1 "+ev {
		t.Fatalf("event %q", got)
	}
	// The connection stayed up.
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
	if gw.dials() != 1 {
		t.Fatalf("%d dials after an error frame", gw.dials())
	}
}

func TestSilentGatewayIsDetectedByHeartbeat(t *testing.T) {
	gw := newFakeGW(t)
	gw.heartbeat = 0.05 // the fake never pings: 150 ms of silence is a dead link
	gw.setSnap("m1", 1, `{"n":1}`)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	start := time.Now()
	s := h.waitStatus(t, Reconnecting)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("dead link noticed after %v", d)
	}
	var ne interface{ Timeout() bool }
	if !errors.As(s.Err, &ne) || !ne.Timeout() {
		t.Fatalf("reconnect cause %v, want a read timeout", s.Err)
	}
	gw.waitConn(t)
}

func TestRunTwiceIsRefused(t *testing.T) {
	gw := newFakeGW(t)
	h := startClient(t, gw, nil)
	gw.waitConn(t)
	if err := h.c.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	resp := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"2"}}}
	if d := retryAfter(resp); d != 2*time.Second {
		t.Fatalf("retryAfter = %v", d)
	}
	resp.StatusCode = http.StatusBadGateway
	if d := retryAfter(resp); d != 0 {
		t.Fatalf("retryAfter(502) = %v", d)
	}
	if d := retryAfter(nil); d != 0 {
		t.Fatalf("retryAfter(nil) = %v", d)
	}
}

func TestPingsKeepTheLinkAlive(t *testing.T) {
	gw := newFakeGW(t)
	gw.heartbeat = 0.5 // 1.5 s of silence would be a dead link (room for a loaded host)...
	gw.pingEvery = 100 * time.Millisecond
	gw.setSnap("m1", 1, `{"n":1}`)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	// ...but pings keep arriving, and are answered: 20 pongs take at least 2 s, more
	// than the silence that would end the link.
	servertest.Eventually(t, 10*time.Second, func() error {
		if n := gw.pongs.Load(); n < 20 {
			return fmt.Errorf("%d pongs", n)
		}
		return nil
	})
	for len(h.status) > 0 {
		if s := <-h.status; s.Phase == Reconnecting {
			t.Fatalf("the link was given up although pings arrived: %+v", s)
		}
	}
	if gw.dials() != 1 {
		t.Fatalf("%d dials; want 1", gw.dials())
	}
	gw.publish("m1", `{"n":2}`, true)
	h.waitState(t, gw.snap("m1"))
}

// TestNothingLostUnderFaults runs many deltas with losses announced by resync, a
// reconnect and a duplicate subscribe answer; the Checker must see no violation and the
// rebuilt state must equal the final snapshot, for two matches.
func TestNothingLostUnderFaults(t *testing.T) {
	gw := newFakeGW(t)
	chk := NewChecker()
	h := startClient(t, gw, func(o *Options) { o.Observer = chk })
	matches := []string{"a", "b"}
	for _, m := range matches {
		gw.setSnap(m, 0, `{}`)
		h.subscribe(t, m)
	}
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "a", "b")
	rng := uint64(42)
	next := func(n uint64) uint64 { rng = rng*6364136223846793005 + 1442695040888963407; return (rng >> 33) % n }
	for i := 0; i < 400; i++ {
		m := matches[next(2)]
		patch := fmt.Sprintf(`{"k%d":%d,"last":%d}`, next(20), i, i)
		switch r := next(100); {
		case r < 5: // lost, then announced
			gw.publish(m, patch, false)
			conn.send(fmt.Sprintf(`{"type":"resync","match":%q,"reason":"slow"}`, m))
		case r < 6:
			conn.send(fmt.Sprintf(`{"type":"subscribed","match":%q}`, m))
			gw.publish(m, patch, true)
		case i == 200:
			conn.closeWith(websocket.CloseGoingAway)
			gw.publish(m, patch, true)
			conn = gw.waitConn(t)
			// Until the gateway has both subscriptions, a `subscribed` from the test
			// would be a lie (and the Checker rightly calls the result a loss).
			conn.waitOp(t, "subscribe", "a", "b")
		default:
			gw.publish(m, patch, true)
		}
	}
	for _, m := range matches {
		gw.publish(m, `{"end":true}`, true)
		h.waitStateSeq(t, gw.snap(m))
	}
	if v := chk.Violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
	for _, m := range matches {
		if err := chk.Verify(gw.snap(m)); err != nil {
			t.Fatal(err)
		}
		if st := chk.Stats(m); st.Resyncs == 0 {
			t.Fatalf("match %s: no resync exercised: %+v", m, st)
		}
	}
	if gw.dials() != 2 {
		t.Fatalf("%d dials, want 2", gw.dials())
	}
}

// A store behind the stream answers snapshots that leave the hole open, again and again.
// The client asks again, each time later, but never later than the backoff's cap: with
// the window doubling without bound, the twelve stale answers here would keep the match
// frozen for 20 s (Base 10 ms, Rand 0.5) and with the defaults for over an hour.
func TestStaleSnapshotRetriesAreCapped(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 1, `{"n":1}`)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	gw.serveStale(gw.snap("m1"), 12)
	gw.publish("m1", `{"n":2}`, false) // lost: the client sees a gap at 3
	gw.publish("m1", `{"n":3}`, true)
	h.waitState(t, gw.snap("m1")) // within recv's 5 s: 12 capped retries take ~0.9 s
	if n := gw.snapGets.Load(); n != 14 {
		t.Fatalf("%d snapshot GETs, want 14 (the first, 12 stale, the good one)", n)
	}
	if gw.dials() != 1 {
		t.Fatalf("%d dials: a store behind must not cost the connection", gw.dials())
	}
}

func TestRetryWindowIsCapped(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Cap: time.Second}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	for n := range 70 {
		w := want[min(n, len(want)-1)]
		if got := b.retryWindow(n); got != w {
			t.Fatalf("retryWindow(%d) = %v, want %v", n, got, w)
		}
	}
	// Doublings that overflow int64 and wrap: to 0 (1<<25 ns shifted 39 times), to a
	// positive value (an hour), to a negative one (the default base).
	for _, b := range []Backoff{
		{Base: 1 << 25, Cap: time.Minute},
		{Base: time.Hour, Cap: 2 * time.Hour},
		{Base: DefaultBackoffBase, Cap: DefaultBackoffCap},
	} {
		for n := 30; n < 70; n++ {
			if got := b.retryWindow(n); got != b.Cap {
				t.Fatalf("%+v: retryWindow(%d) = %v, want the cap", b, n, got)
			}
			if got := b.Window(n); got != b.Cap {
				t.Fatalf("%+v: Window(%d) = %v, want the cap", b, n, got)
			}
		}
	}
}

// A 503 with Retry-After (a store behind what the gateway delivered) is asked again no
// sooner than it says (up to the backoff's cap), although the first window here is 10 ms.
func TestSnapshotRetryAfterIsHonoured(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 2, `{"n":2}`)
	gw.snapRetryAfter = "1"
	gw.snapFail.Store(1)
	h := startClient(t, gw, func(o *Options) { o.Backoff.Cap = 5 * time.Second }) // Retry-After is waited up to the cap
	h.subscribe(t, "m1")
	gw.waitConn(t)
	h.waitState(t, gw.snap("m1"))
	gw.mu.Lock()
	times := append([]time.Time(nil), gw.snapTimes...)
	gw.mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d snapshot GETs, want 2 (one 503)", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("asked again %v after a 503 with Retry-After: 1", gap)
	}
}

func TestSnapshotFetchIsRetried(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 2, `{"n":2}`)
	gw.snapFail.Store(2)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	gw.waitConn(t)
	gw.publish("m1", `{"n":3}`, true) // buffered while the fetches fail
	h.waitState(t, gw.snap("m1"))
	if n := gw.snapGets.Load(); n != 3 {
		t.Fatalf("%d snapshot GETs, want 3 (two failures)", n)
	}
	if gw.dials() != 1 {
		t.Fatalf("%d dials: a failing snapshot endpoint must not cost the connection", gw.dials())
	}
}
