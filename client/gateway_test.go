package client

// Tests of the Go client's token handling against the REAL gateway (server/servertest)
// with --jwt-secret: the `auth` refresh keeps a connection past its first token's exp, a
// connection whose provider has nothing newer gets token_expired and 4001, and a match
// outside the token's claim is refused with `forbidden` while the others go on. Both
// clocks are the test's: the gateway's connection clock (servertest.Clock) and the
// client's, whose timers the test fires.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/jwttest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// gatewayClock is a client clock reading the gateway's clock; its timers fire when the test says.
type gatewayClock struct {
	*fakeClock
	gw *servertest.Clock
}

func (c gatewayClock) Now() time.Time { return c.gw.Now() }

// advance moves both clocks.
func (c gatewayClock) advance(d time.Duration) { c.gw.Advance(d) }

// gwPublisher publishes numbered deltas of one match on an embedded bus.
type gwPublisher struct {
	t     *testing.T
	b     *servertest.Bus
	match string
	mu    sync.Mutex
	seq   uint64
}

func (p *gwPublisher) publish() Snapshot {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	state := fmt.Sprintf(`{"n":%d}`, p.seq)
	frame := fmt.Sprintf(`{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":"high","ts":%d,"patch":%s}`, p.match, p.seq, time.Now().UnixMicro(), state)
	if err := p.b.PublishDelta(context.Background(), bus.Delta{Match: p.match, Epoch: "e1", Seq: p.seq, State: json.RawMessage(state), Frame: []byte(frame)}); err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	return Snapshot{Match: p.match, Epoch: "e1", Seq: p.seq, State: json.RawMessage(state)}
}

func startJWTGateway(t *testing.T) (*server.Server, *servertest.Bus, *servertest.Clock, []byte) {
	t.Helper()
	secret := []byte("gateway-test-secret")
	clk := servertest.NewClock()
	now := clk.Now()
	clk.Advance(now.Truncate(time.Second).Add(time.Second).Sub(now)) // whole seconds, as a JWT's exp
	b := servertest.NewBus()
	// A long heartbeat: moving the clock by minutes must not make the connections idle (4000).
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1, JWTSecret: secret, Shard: shard.Options{Now: clk.Now, Heartbeat: time.Hour}})
	return s, b, clk, secret
}

// signer mints tokens on the gateway's clock.
func signer(t *testing.T, secret []byte, clk *servertest.Clock, lifetime time.Duration, matches ...string) func() string {
	n := 0
	var mu sync.Mutex
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return jwttest.MintUnix(t, secret, "c", clk.Now().Add(lifetime).Unix()+int64(n), matches)
	}
}

func startGatewayClient(t *testing.T, s *server.Server, clk clock, provide func(context.Context) (string, error)) *harness {
	t.Helper()
	h := &harness{states: make(chan State, 4096), status: make(chan Status, 256), done: make(chan error, 1)}
	c, err := New(Options{
		URL:      servertest.WSURL(s, ""),
		BaseHTTP: servertest.HTTPURL(s),
		Backoff:  Backoff{Base: 10 * time.Millisecond, Cap: 200 * time.Millisecond, InitialSpread: 20 * time.Millisecond},
		Rand:     func() float64 { return 0.5 },
		OnStatus: func(st Status) { h.status <- st },
		Token:    provide,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.clock, c.tokens.clock = clk, clk
	cancel := h.run(c)
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

func TestGatewayRefreshWithAuthOutlivesTheFirstToken(t *testing.T) {
	s, b, gwClk, secret := startJWTGateway(t)
	pub := &gwPublisher{t: t, b: b, match: "m1"}
	pub.publish()
	mint := signer(t, secret, gwClk, 2*time.Minute)
	clk := gatewayClock{newFakeClock(), gwClk}
	h := startGatewayClient(t, s, clk, func(context.Context) (string, error) { return mint(), nil })
	errs := make(chan *ServerError, 8)
	h.c.OnError(func(e *ServerError) { errs <- e })
	h.subscribe(t, "m1")
	h.waitStateSeqEpoch(t, Snapshot{Match: "m1", Epoch: "e1", Seq: 1, State: json.RawMessage(`{"n":1}`)})

	// A control client whose provider has nothing newer: the gateway ends it at exp.
	stale := mint()
	ctlClk := gatewayClock{newFakeClock(), gwClk}
	ctl := startGatewayClient(t, s, ctlClk, func(context.Context) (string, error) { return stale, nil })
	ctlErrs := make(chan *ServerError, 8)
	ctl.c.OnError(func(e *ServerError) { ctlErrs <- e })
	ctl.subscribe(t, "m1")
	ctl.waitStatus(t, Live)

	tm := clk.nextTimer(t)
	if want := 2*time.Minute + time.Second - DefaultTokenRefreshMargin; tm.d != want {
		t.Fatalf("refresh armed in %v, want %v", tm.d, want)
	}
	gwClk.Advance(tm.d)
	tm.c <- clk.Now() // the client sends auth with a fresh token
	clk.nextTimer(t)  // ... and arms the next refresh
	ctlClk.nextTimer(t).c <- clk.Now()
	ctlClk.nextTimer(t) // the control's refresh found nothing newer: retried later

	gwClk.Advance(time.Minute) // past the first tokens' exp
	if e := waitError(t, ctlErrs); e.Code != CodeTokenExpired {
		t.Fatalf("control: error %+v, want token_expired", e)
	}
	st := ctl.waitStatus(t, Reconnecting)
	if st.Err == nil {
		t.Fatalf("control reconnecting without a cause: %+v", st)
	}
	// The refreshed client is still on its first connection and still fed.
	want := pub.publish()
	h.waitStateSeqEpoch(t, want)
	select {
	case e := <-errs:
		t.Fatalf("refreshed client got %+v", e)
	default:
	}
	for len(h.status) > 0 {
		if st := <-h.status; st.Phase == Reconnecting {
			t.Fatalf("the refreshed client reconnected: %+v", st)
		}
	}
	if n := servertest.Metric(t, servertest.HTTPURL(s), `crease_handshakes_total{result="ok"}`); n != 2 {
		t.Fatalf("%v handshakes, want 2 (no reconnect of either before the control's)", n)
	}
}

func TestGatewayForbiddenMatchIsRefusedOthersGoOn(t *testing.T) {
	s, b, gwClk, secret := startJWTGateway(t)
	pub := &gwPublisher{t: t, b: b, match: "open"}
	pub.publish()
	vip := &gwPublisher{t: t, b: b, match: "vip"}
	vip.publish()
	mint := signer(t, secret, gwClk, time.Hour, "open")
	h := startGatewayClient(t, s, realClock{}, func(context.Context) (string, error) { return mint(), nil })
	errs := make(chan *ServerError, 8)
	h.c.OnError(func(e *ServerError) { errs <- e })
	h.subscribe(t, "open")
	h.subscribe(t, "vip")
	if e := waitError(t, errs); e.Code != CodeForbidden || e.Match != "vip" {
		t.Fatalf("error %+v, want forbidden for vip", e)
	}
	h.waitStatus(t, Live)
	want := pub.publish()
	h.waitStateSeqEpoch(t, want)
	vip.publish()
	for len(h.states) > 0 {
		if st := <-h.states; st.Match == "vip" {
			t.Fatalf("a state of the refused match: %+v", st)
		}
	}
	if n := servertest.Metric(t, servertest.HTTPURL(s), `crease_handshakes_total{result="ok"}`); n != 1 {
		t.Fatalf("%v handshakes, want 1: a refusal must not cost the connection", n)
	}
}
