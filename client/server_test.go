package client_test

// Tests of the Go client against the REAL gateway (server/servertest) with a real match
// replaying on the embedded bus: convergence to the REST snapshot mid-match, a resync
// sent by the gateway, and a gateway restarted on the same ports.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crease/bus"
	"crease/client"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"

	"github.com/golang-jwt/jwt/v5"
)

// replaySpeed is deltas a second: a T20 match of some 260 deltas takes about 5 s.
const replaySpeed = 50

// testBackoff keeps reconnects quick but jittered: the first try waits 0-200 ms.
var testBackoff = client.Backoff{Base: 20 * time.Millisecond, Cap: 400 * time.Millisecond, InitialSpread: 200 * time.Millisecond}

// ---- the bus ----

// ---- the replay ----

type replay struct {
	b      *servertest.Bus
	match  string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startReplay(t *testing.T, b *servertest.Bus, m *ingest.Match) *replay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replay{b: b, match: m.ID(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ingest.Replay(ctx, b, m, ingest.ReplayOptions{Speed: replaySpeed}) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// seq is the seq stored on the bus.
func (r *replay) seq() uint64 {
	s, err := r.b.Snapshot(context.Background(), r.match)
	if err != nil {
		return 0
	}
	return s.Seq
}

func (r *replay) waitSeq(t *testing.T, seq uint64) {
	t.Helper()
	servertest.Reaches(t, 15*time.Second, "replay at seq", seq, r.seq)
}

// stop cancels the replay (if it runs) and waits for it.
func (r *replay) stop(t *testing.T) error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			t.Errorf("replay: %v", r.err)
		}
	})
	return r.err
}

// wait waits for the replay to reach the end of the match.
func (r *replay) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("replay still running after %v (seq %d)", timeout, r.seq())
	}
}

// ---- the clients ----

// watched is one Client with a Checker as its Observer and counters of what it saw.
type watched struct {
	name string
	c    *client.Client
	chk  *client.Checker

	mu       sync.Mutex
	conns    int
	requests int // snapshot fetches
	resyncs  []string
	events   int
	states   []client.State // JSON dropped
	statuses []client.Status
}

// Observer, in front of the Checker.
func (w *watched) Connected() {
	w.mu.Lock()
	w.conns++
	w.mu.Unlock()
	w.chk.Connected()
}

func (w *watched) Frame(raw []byte) {
	var f struct{ Type, Match, Reason string }
	if json.Unmarshal(raw, &f) == nil && f.Type == "resync" {
		w.mu.Lock()
		w.resyncs = append(w.resyncs, f.Match+":"+f.Reason)
		w.mu.Unlock()
	}
	w.chk.Frame(raw)
}

func (w *watched) SnapshotRequested(match string) {
	w.mu.Lock()
	w.requests++
	w.mu.Unlock()
	w.chk.SnapshotRequested(match)
}

func (w *watched) Snapshot(s client.Snapshot) { w.chk.Snapshot(s) }

func (w *watched) lastSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.states) == 0 {
		return 0
	}
	return w.states[len(w.states)-1].Seq
}

func (w *watched) phase() client.Phase {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.statuses) == 0 {
		return 0
	}
	return w.statuses[len(w.statuses)-1].Phase
}

type counts struct{ conns, requests, resyncs, events, states int }

func (w *watched) counts() counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return counts{w.conns, w.requests, len(w.resyncs), w.events, len(w.states)}
}

// startClient runs a client of the gateway at wsURL/httpURL subscribed to match.
func startClient(t *testing.T, name, wsURL, httpURL, match string) *watched {
	t.Helper()
	return startClientWith(t, name, wsURL, httpURL, match, nil)
}

// startClientWith is startClient with the options changed by tweak first.
func startClientWith(t *testing.T, name, wsURL, httpURL, match string, tweak func(*client.Options)) *watched {
	t.Helper()
	w := &watched{name: name, chk: client.NewChecker()}
	opts := client.Options{
		URL:      wsURL,
		BaseHTTP: httpURL,
		Backoff:  testBackoff,
		Observer: w,
		OnStatus: func(s client.Status) {
			w.mu.Lock()
			w.statuses = append(w.statuses, s)
			w.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&opts)
	}
	c, err := client.New(opts)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	w.c = c
	c.OnEvent(func(string, []byte) {
		w.mu.Lock()
		w.events++
		w.mu.Unlock()
	})
	if _, err := c.Subscribe(match, func(s client.State) {
		s.JSON = nil
		w.mu.Lock()
		w.states = append(w.states, s)
		w.mu.Unlock()
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	})
	return w
}

func startClients(t *testing.T, n int, prefix string, s *server.Server, match string) []*watched {
	t.Helper()
	var ws []*watched
	for i := range n {
		ws = append(ws, startClient(t, prefix+strconv.Itoa(i), servertest.WSURL(s, ""), servertest.HTTPURL(s), match))
	}
	return ws
}

// waitLive waits until every client is live with a state at least at seq.
func waitLive(t *testing.T, ws []*watched, seq uint64) {
	t.Helper()
	for _, w := range ws {
		servertest.Eventually(t, 15*time.Second, func() error {
			if p, at := w.phase(), w.lastSeq(); p != client.Live || at < seq {
				return fmt.Errorf("%s: phase %v at seq %d, waiting for live at %d", w.name, p, at, seq)
			}
			return nil
		})
	}
}

// converge waits until every client holds the final snapshot's seq, then checks it all:
// Checker.Verify (delivery rules 1 and 2, and the rebuilt state equal to the snapshot),
// and the states handed to the subscriber gap-free.
func converge(t *testing.T, ws []*watched, match string) client.Snapshot {
	t.Helper()
	final, err := ws[0].c.FetchSnapshot(context.Background(), match)
	if err != nil {
		t.Fatalf("final snapshot: %v", err)
	}
	for _, w := range ws {
		servertest.Eventually(t, 15*time.Second, func() error {
			if p, at := w.phase(), w.lastSeq(); p != client.Live || at != final.Seq {
				return fmt.Errorf("%s: at seq %d, phase %v; final seq %d", w.name, at, p, final.Seq)
			}
			return nil
		})
		if err := w.chk.Verify(final); err != nil {
			t.Errorf("%s: %v", w.name, err)
		}
		w.mu.Lock()
		for i := 1; i < len(w.states); i++ {
			prev, cur := w.states[i-1], w.states[i]
			switch {
			case cur.Cause == client.CauseDelta && cur.Seq != prev.Seq+1:
				t.Errorf("%s: delta state at seq %d after seq %d", w.name, cur.Seq, prev.Seq)
			case cur.Seq < prev.Seq:
				t.Errorf("%s: %s state went back from seq %d to %d", w.name, cur.Cause, prev.Seq, cur.Seq)
			}
		}
		w.mu.Unlock()
	}
	return final
}

// ---- helpers ----

func metric(t *testing.T, s *server.Server, sample string) float64 {
	t.Helper()
	return servertest.Metric(t, servertest.HTTPURL(s), sample)
}

// ---- the tests ----

// replayedOnGateway runs a gateway of two loops on a servertest bus and starts the
// replay of the first real match on it.
func replayedOnGateway(t *testing.T) (*server.Server, *replay, *ingest.Match) {
	t.Helper()
	m := servertest.RealMatch(t)
	b := servertest.NewBus()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	return s, startReplay(t, b, m), m
}

func TestClientsJoiningMidMatchEndWithTheSnapshot(t *testing.T) {
	s, rp, m := replayedOnGateway(t)

	// Two clients join early, two more well into the first innings.
	rp.waitSeq(t, 10)
	ws := startClients(t, 2, "early", s, m.ID())
	rp.waitSeq(t, 60)
	ws = append(ws, startClients(t, 2, "late", s, m.ID())...)
	waitLive(t, ws, 61)

	rp.wait(t, 30*time.Second)
	final := converge(t, ws, m.ID())
	for _, w := range ws {
		c := w.counts()
		if c.conns != 1 || c.requests != 1 || c.resyncs != 0 {
			t.Errorf("%s: %d connections, %d snapshot fetches, %d resyncs; want 1, 1, 0", w.name, c.conns, c.requests, c.resyncs)
		}
		if c.events == 0 {
			t.Errorf("%s: no event frame", w.name)
		}
		t.Logf("%s: %d states, %d events, final seq %d, %+v", w.name, c.states, c.events, final.Seq, w.chk.Stats(m.ID()))
	}
}

func TestClientsRefetchOnAGatewayResyncWithoutReconnecting(t *testing.T) {
	s, rp, m := replayedOnGateway(t)
	rp.waitSeq(t, 5)
	ws := startClients(t, 3, "c", s, m.ID())
	waitLive(t, ws, 6)
	before := make([]counts, len(ws))
	for i, w := range ws {
		before[i] = w.counts()
	}

	rp.b.Lost(m.ID(), bus.ReasonGap) // the gateway sends resync{gap} to its subscribers
	for i, w := range ws {
		servertest.Eventually(t, 10*time.Second, func() error {
			if c := w.counts(); c.resyncs != 1 || c.requests != before[i].requests+1 {
				return fmt.Errorf("%s: %d resyncs, %d snapshot fetches (had %d): no refetch after the resync", w.name, c.resyncs, c.requests, before[i].requests)
			}
			return nil
		})
	}
	rp.waitSeq(t, rp.seq()+5) // and deltas go on after it
	rp.stop(t)
	converge(t, ws, m.ID())
	for _, w := range ws {
		w.mu.Lock()
		rs := w.resyncs
		w.mu.Unlock()
		if c := w.counts(); c.conns != 1 || c.requests != 2 || len(rs) != 1 || rs[0] != m.ID()+":gap" {
			t.Errorf("%s: %d connections, %d snapshot fetches, resyncs %v; want 1, 2, [%s:gap]", w.name, c.conns, c.requests, rs, m.ID())
		}
	}
	if hs := metric(t, s, `crease_handshakes_total{result="ok"}`); hs != float64(len(ws)) {
		t.Errorf("%v handshakes, want %d (no reconnect)", hs, len(ws))
	}
}

func TestClientsReconnectToAGatewayRestartedOnTheSamePorts(t *testing.T) {
	m := servertest.RealMatch(t)
	b := servertest.NewBus()
	opts := server.Options{WSAddr: servertest.FreeAddr(t), HTTPAddr: servertest.FreeAddr(t), Bus: b, Loops: 2}
	s1 := servertest.Run(t, opts)
	rp := startReplay(t, b, m)
	rp.waitSeq(t, 5)
	ws := startClients(t, 4, "c", s1, m.ID())
	waitLive(t, ws, 6)

	s1.Shutdown()
	var waits []time.Duration
	for _, w := range ws {
		servertest.Eventually(t, 10*time.Second, func() error {
			if p := w.phase(); p != client.Reconnecting {
				return fmt.Errorf("%s: phase %v after the gateway stopped", w.name, p)
			}
			return nil
		})
		w.mu.Lock()
		for _, st := range w.statuses {
			if st.Phase == client.Reconnecting {
				waits = append(waits, st.In)
				break
			}
		}
		w.mu.Unlock()
	}
	distinct := map[time.Duration]bool{}
	for _, d := range waits {
		distinct[d] = true
		if d < 0 || d >= testBackoff.InitialSpread {
			t.Errorf("first reconnect in %v, want within [0, %v)", d, testBackoff.InitialSpread)
		}
	}
	if len(distinct) < 2 {
		t.Errorf("first reconnect delays %v: no jitter", waits)
	}

	// The match goes on while no gateway runs.
	downSeq := rp.seq()
	rp.waitSeq(t, downSeq+10)
	servertest.WaitBindable(t, opts.WSAddr)
	servertest.WaitBindable(t, opts.HTTPAddr)
	s2 := servertest.Run(t, opts)
	waitLive(t, ws, downSeq+10)
	rp.stop(t)
	converge(t, ws, m.ID())
	// The new gateway recovers every client from the match's history (subscribe with
	// since): no second snapshot.
	for _, w := range ws {
		if c := w.counts(); c.conns != 2 || c.requests != 1 {
			t.Errorf("%s: %d connections, %d snapshot fetches; want 2, 1", w.name, c.conns, c.requests)
		}
	}
	if hs := metric(t, s2, `crease_handshakes_total{result="ok"}`); hs != float64(len(ws)) {
		t.Errorf("new gateway: %v handshakes, want %d", hs, len(ws))
	}
	t.Logf("first reconnect delays %v; converged at seq %d after the outage from seq %d", waits, rp.seq(), downSeq)
}

// A gateway with --jwt-secret takes the token of the provider as the bearer.<jwt>
// subprotocol; the client converges as without one. A client without a token is
// refused (401) and keeps backing off.
func TestClientWithATokenProviderOnAGatewayWithJWT(t *testing.T) {
	secret := []byte("server-test-secret")
	m := servertest.RealMatch(t)
	b := servertest.NewBus()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 1, JWTSecret: secret})
	rp := startReplay(t, b, m)
	rp.waitSeq(t, 5)
	var calls atomic.Int32
	provider := func(context.Context) (string, error) {
		calls.Add(1)
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	}
	w := startClientWith(t, "tok", servertest.WSURL(s, ""), servertest.HTTPURL(s), m.ID(), func(o *client.Options) { o.Token = provider })
	waitLive(t, []*watched{w}, 6)
	rp.stop(t)
	converge(t, []*watched{w}, m.ID())
	if calls.Load() < 1 {
		t.Fatal("the provider was never asked")
	}

	anon := startClient(t, "anon", servertest.WSURL(s, ""), servertest.HTTPURL(s), m.ID())
	servertest.Eventually(t, 10*time.Second, func() error {
		anon.mu.Lock()
		defer anon.mu.Unlock()
		n := 0
		for _, st := range anon.statuses {
			if st.Phase == client.Reconnecting {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("the client without a token was refused %d times, want 2", n)
		}
		return nil
	})
	anon.mu.Lock()
	defer anon.mu.Unlock()
	for _, st := range anon.statuses {
		if st.Phase == client.Live {
			t.Fatal("a client without a token went live")
		}
	}
}
