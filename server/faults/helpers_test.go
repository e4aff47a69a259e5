package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"crease/bus"
	"crease/client"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

func TestMain(m *testing.M) {
	// Some toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	toxics.Register("blackhole", new(blackhole))
	os.Exit(m.Run())
}

// soak reports whether the long versions run (make soak).
func soak() bool { return os.Getenv("CREASE_SOAK") != "" }

// pick returns short normally and long under CREASE_SOAK.
func pick[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

// ---- toxiproxy as a library ----

// blackhole is a toxic for a network that is gone (airplane mode, a tunnel): bytes vanish
// and so does a close. toxiproxy's own timeout toxic drops bytes but passes the close
// on at once, so one side's giving up reached the other as a FIN, which no real outage
// does. When the blackhole is removed (the network is back) a swallowed close is passed
// on, as the RST the peer would answer the next packet with.
type blackhole struct{}

type blackholeState struct{ eof bool }

func (*blackhole) NewState() any { return new(blackholeState) }

func (*blackhole) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*blackholeState)
	in := stub.Input
	if st.eof {
		in = nil
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-in:
			if c == nil {
				st.eof = true
				in = nil // swallowed: block on nothing until removed
			}
		}
	}
}

func (*blackhole) Cleanup(stub *toxics.ToxicStub) {
	if stub.State.(*blackholeState).eof {
		stub.Close()
	}
}

// proxy is one in-process toxiproxy listening on a free loopback port.
type proxy struct {
	t *testing.T
	p *toxiproxy.Proxy
}

func newProxy(t *testing.T, name, upstream string) *proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return &proxy{t: t, p: p}
}

// Addr is the proxy's listening address.
func (p *proxy) Addr() string { return p.p.Listen }

// add adds a toxic; stream is "upstream" (towards the server) or "downstream".
func (p *proxy) add(name, typ, stream string, attrs map[string]any) {
	p.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
	if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		p.t.Fatalf("toxic %s on %s: %v", name, p.p.Name, err)
	}
}

// both adds the same toxic on both streams (names suffixed _up and _down).
func (p *proxy) both(name, typ string, attrs map[string]any) {
	p.add(name+"_up", typ, "upstream", attrs)
	p.add(name+"_down", typ, "downstream", attrs)
}

func (p *proxy) remove(names ...string) {
	for _, n := range names {
		if err := p.p.Toxics.RemoveToxic(context.Background(), n); err != nil {
			p.t.Errorf("removing toxic %s: %v", n, err)
		}
	}
}

func (p *proxy) removeBoth(name string) { p.remove(name+"_up", name+"_down") }

// clientNet is the path between clients and a gateway: one proxy for the WebSocket
// port and one for the HTTP port (snapshots go over the same bad network).
type clientNet struct {
	ws, http *proxy
}

func newClientNet(t *testing.T, gw *server.Server) *clientNet {
	return &clientNet{
		ws:   newProxy(t, "ws", gw.WSAddr().String()),
		http: newProxy(t, "http", gw.HTTPAddr().String()),
	}
}

func (n *clientNet) both(name, typ string, attrs map[string]any) {
	n.ws.both(name, typ, attrs)
	n.http.both(name, typ, attrs)
}

func (n *clientNet) removeBoth(name string) {
	n.ws.removeBoth(name)
	n.http.removeBoth(name)
}

func (n *clientNet) wsURL() string   { return "ws://" + n.ws.Addr() + server.DefaultWSPath }
func (n *clientNet) httpURL() string { return "http://" + n.http.Addr() }

// ---- the match ----

// heartbeatGateway runs a gateway of two loops pinging every second (a link silent for
// 3 s is dead) on an embedded bus.
func heartbeatGateway(t *testing.T) (*bus.Embedded, *server.Server) {
	t.Helper()
	b := bus.NewEmbedded()
	return b, servertest.Run(t, server.Options{Bus: b, Loops: 2, Shard: shard.Options{Heartbeat: time.Second}})
}

// replay is servertest.Replay whose stop reports on t an error of the replay other
// than its stop; the test's end stops it too.
func replay(t *testing.T, pub bus.Publisher, m *ingest.Match, speed float64) (stop func()) {
	t.Helper()
	stopReplay := servertest.Replay(t, pub, m, speed)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := stopReplay(); err != nil {
				t.Errorf("replay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// snapshot fetches the final snapshot straight from the gateway.
func snapshot(t *testing.T, gw *server.Server, match string) client.Snapshot {
	t.Helper()
	return servertest.MustGetJSON[client.Snapshot](t, servertest.HTTPURL(gw)+"/v1/matches/"+match)
}

// ---- clients ----

// watched is one Go client with its Checker and the seq of the state it holds.
type watched struct {
	name   string
	chk    *client.Checker
	seq    atomic.Uint64
	states atomic.Int64
	conns  atomic.Int64 // Connecting phases seen
	cancel context.CancelFunc
	done   chan struct{}
}

// startClient runs a client of match against wsURL/httpBase until the test ends.
func startClient(t *testing.T, name, wsURL, httpBase, match string) *watched {
	t.Helper()
	return startClientWith(t, name, wsURL, httpBase, match, nil)
}

// startClientWith is startClient with the client's options changed by opt (nil: none).
func startClientWith(t *testing.T, name, wsURL, httpBase, match string, opt func(*client.Options)) *watched {
	t.Helper()
	w := &watched{name: name, chk: client.NewChecker(), done: make(chan struct{})}
	d := *websocket.DefaultDialer
	d.HandshakeTimeout = 3 * time.Second
	o := client.Options{
		URL:        wsURL,
		BaseHTTP:   httpBase,
		Dialer:     &d,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Backoff:    client.Backoff{Base: 100 * time.Millisecond, Cap: time.Second, InitialSpread: 300 * time.Millisecond},
		Observer:   w.chk,
		Logger:     slog.New(slog.DiscardHandler),
		OnStatus: func(s client.Status) {
			if s.Phase == client.Connecting {
				w.conns.Add(1)
			}
		},
	}
	if opt != nil {
		opt(&o)
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(match, func(s client.State) { w.seq.Store(s.Seq); w.states.Add(1) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { defer close(w.done); _ = c.Run(ctx) }()
	t.Cleanup(w.stop)
	return w
}

func (w *watched) stop() {
	w.cancel()
	<-w.done
}

func startClients(t *testing.T, n int, prefix, wsURL, httpBase, match string) []*watched {
	out := make([]*watched, n)
	for i := range out {
		out[i] = startClient(t, fmt.Sprintf("%s%d", prefix, i), wsURL, httpBase, match)
	}
	return out
}

// converge waits until every client holds final.Seq, then checks that nothing was lost:
// no violation, and the rebuilt state equals final.
func converge(t *testing.T, final client.Snapshot, within time.Duration, ws ...*watched) {
	t.Helper()
	// The state callback runs before the Checker sees the next frame: wait for the
	// Checker too, not only for the seq.
	servertest.Eventually(t, within, func() error {
		for _, w := range ws {
			if got := w.seq.Load(); got != final.Seq {
				return fmt.Errorf("%s holds seq %d, final snapshot is at %d", w.name, got, final.Seq)
			}
			if err := w.chk.Verify(final); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
		}
		return nil
	})
	for _, w := range ws {
		if v := w.chk.Violations(); len(v) > 0 {
			t.Errorf("%s: %d delivery violations, first: %v", w.name, len(v), v[0])
		}
	}
}

// ---- metrics ----

// metric sums the series of name on the gateway's /metrics whose labels contain every
// one of want (`reason="bus"`).
func metric(t *testing.T, gw *server.Server, name string, want ...string) float64 {
	t.Helper()
	return servertest.Scrape(t, servertest.HTTPURL(gw)).Sum(name, want...)
}

// freshClient proves the gateway still serves: a new client straight to the gateway
// converges to final.
func freshClient(t *testing.T, gw *server.Server, final client.Snapshot) {
	t.Helper()
	w := startClient(t, "fresh", servertest.WSURL(gw, ""), servertest.HTTPURL(gw), final.Match)
	converge(t, final, 10*time.Second, w)
}
