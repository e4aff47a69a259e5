package client

import (
	"testing"
	"time"
)

// waitError waits for an `error` frame surfaced through OnError.
func waitError(t *testing.T, errs chan *ServerError) *ServerError {
	t.Helper()
	return recv(t, errs, "no error surfaced")
}

// A subscription the gateway refuses (forbidden by the token's claim, or a bad request)
// is that match's failure only: the others go live and the status does not stay at
// resyncing; the refusal reaches OnError with its match.
func TestRefusedSubscriptionsDoNotHoldTheStatus(t *testing.T) {
	for _, code := range []string{CodeForbidden, CodeBadRequest, CodeTooManySubscriptions} {
		t.Run(code, func(t *testing.T) {
			gw := newFakeGW(t)
			gw.setSnap("ok", 2, `{"n":2}`)
			gw.refuseSub["no"] = code
			h := startClient(t, gw, nil)
			errs := make(chan *ServerError, 8)
			h.c.OnError(func(e *ServerError) { errs <- e })
			h.subscribe(t, "ok")
			h.subscribe(t, "no")
			conn := gw.waitConn(t)
			conn.waitOp(t, "subscribe", "ok", "no")
			e := waitError(t, errs)
			if e.Code != code || e.Match != "no" {
				t.Fatalf("error %+v, want %s for match no", e, code)
			}
			if r := h.c.Refusal("no"); r == nil || r.Code != code {
				t.Fatalf("Refusal(no) = %+v", r)
			}
			if r := h.c.Refusal("ok"); r != nil {
				t.Fatalf("Refusal(ok) = %+v", r)
			}
			h.waitState(t, gw.snap("ok"))
			h.waitStatus(t, Live)
			gw.publish("ok", `{"n":3}`, true)
			h.waitState(t, gw.snap("ok"))
			if gw.dials() != 1 || gw.snapGets.Load() != 1 {
				t.Fatalf("%d dials, %d snapshot GETs; want 1 and 1 (none for the refused match)", gw.dials(), gw.snapGets.Load())
			}
		})
	}
}

// A subscribe refused with rate_limited is sent again after a backoff, on the same
// connection.
func TestRateLimitedSubscribeIsRetried(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("m1", 4, `{"n":4}`)
	gw.refuseSub["m1"] = CodeRateLimited
	h := startClient(t, gw, func(o *Options) { o.Rand = func() float64 { return 0.01 } })
	h.subscribe(t, "m1")
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "m1")
	h.waitStatus(t, Live) // nothing else is waited for meanwhile
	gw.mu.Lock()
	delete(gw.refuseSub, "m1")
	gw.mu.Unlock()
	conn.waitOp(t, "subscribe", "m1")
	h.waitState(t, gw.snap("m1"))
	if gw.dials() != 1 {
		t.Fatalf("%d dials", gw.dials())
	}
}

// too_many_subscriptions: when another match is unsubscribed, the refused one is tried
// again on the same connection.
func TestTooManySubscriptionsIsRetriedWhenASlotFrees(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnap("a", 1, `{"a":1}`)
	gw.setSnap("b", 1, `{"b":1}`)
	h := startClient(t, gw, nil)
	errs := make(chan *ServerError, 8)
	h.c.OnError(func(e *ServerError) { errs <- e })
	unsubA := h.subscribe(t, "a")
	conn := gw.waitConn(t)
	conn.waitOp(t, "subscribe", "a")
	h.waitState(t, gw.snap("a"))
	gw.mu.Lock()
	gw.refuseSub["b"] = CodeTooManySubscriptions
	gw.mu.Unlock()
	h.subscribe(t, "b")
	conn.waitOp(t, "subscribe", "b")
	if e := waitError(t, errs); e.Code != CodeTooManySubscriptions || e.Match != "b" {
		t.Fatalf("error %+v", e)
	}
	gw.mu.Lock()
	delete(gw.refuseSub, "b")
	gw.mu.Unlock()
	unsubA()
	conn.waitOp(t, "unsubscribe", "a")
	conn.waitOp(t, "subscribe", "b")
	h.waitState(t, gw.snap("b"))
	if r := h.c.Refusal("b"); r != nil {
		t.Fatalf("Refusal(b) after it was accepted = %+v", r)
	}
}

// A live subscription ended by `forbidden` (an `auth` narrowed the claim) stops being
// followed; on the next connection it is subscribed again, with since.
func TestForbiddenEndsALiveSubscription(t *testing.T) {
	gw := newFakeGW(t)
	gw.setSnapEpoch("m1", "e", 5, `{"n":5}`)
	gw.setSnapEpoch("m2", "e", 1, `{"k":1}`)
	h := startClient(t, gw, nil)
	h.subscribe(t, "m1")
	h.subscribe(t, "m2")
	conn := gw.waitConn(t)
	for got := map[string]bool{}; len(got) < 2; {
		select {
		case st := <-h.states:
			got[st.Match] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("states of %v only", got)
		}
	}
	// Both are live: whatever the statuses on the way (m2 may have come after m1 was
	// live), the last one is Live. The loop reports the status after delivering the
	// state, so it may still be on its way: wait for it.
	h.waitSettledStatus(t, Live)
	conn.send(`{"type":"error","code":"forbidden","match":"m1","message":"outside the new token's claim"}`)
	gw.mu.Lock()
	delete(conn.subs, "m1")
	gw.mu.Unlock()
	gw.publish("m2", `{"k":2}`, true)
	h.waitState(t, gw.snap("m2"))
	for len(h.status) > 0 {
		if s := <-h.status; s.Phase != Live {
			t.Fatalf("status %v after forbidden: the status must stay live", s.Phase)
		}
	}
	conn.closeWith(1001)
	conn = gw.waitConn(t)
	for {
		op := conn.nextOp(t)
		if op.Op == "subscribe" && op.Match == "m1" {
			if op.Since == nil || *op.Since != (sincePos{"e", 5}) {
				t.Fatalf("resubscribe of m1 since %+v, want e:5", op.Since)
			}
			break
		}
	}
}
