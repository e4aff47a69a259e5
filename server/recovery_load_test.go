package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	busredis "crease/bus/redis"
	"crease/client"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// cutNet is a client's network: the test cuts its live connection at will (a TCP close
// under the client's feet), forcing a reconnect without a proxy.
type cutNet struct {
	mu    sync.Mutex
	conn  net.Conn
	dials atomic.Int64
}

func (n *cutNet) dialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			n.dials.Add(1)
			n.mu.Lock()
			n.conn = c
			n.mu.Unlock()
		}
		return c, err
	}}
}

func (n *cutNet) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
}

// loadClient is a Go client (the shipped one) with its Checker.
type loadClient struct {
	name      string
	net       cutNet
	chk       *client.Checker
	seq       atomic.Uint64
	snapshots atomic.Int64
}

func startLoadClient(t *testing.T, name string, gw *server.Server, match string, catchUp bool) *loadClient {
	t.Helper()
	w := &loadClient{name: name, chk: client.NewChecker()}
	c, err := client.New(client.Options{
		URL:        servertest.WSURL(gw, ""),
		BaseHTTP:   servertest.HTTPURL(gw),
		Dialer:     w.net.dialer(),
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Backoff:    client.Backoff{Base: 5 * time.Millisecond, Cap: 50 * time.Millisecond, InitialSpread: 20 * time.Millisecond},
		CatchUp:    catchUp,
		Observer:   snapshotCounter{w.chk, &w.snapshots},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(match, func(s client.State) { w.seq.Store(s.Seq) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// snapshotCounter is a Checker that also counts the snapshots fetched.
type snapshotCounter struct {
	*client.Checker
	n *atomic.Int64
}

func (s snapshotCounter) SnapshotRequested(match string) {
	s.n.Add(1)
	s.Checker.SnapshotRequested(match)
}

// fastPublisher publishes deltas of one match at about rate per second until stopped.
func fastPublisher(t *testing.T, p *servertest.Publisher, rate int) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			for range rate / 100 {
				i++
				p.Set(t, fmt.Sprintf("k%d", i%7), i)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// fetchSnapshot is GET /v1/matches/{match} (getSnapshot) as a client.Snapshot.
func fetchSnapshot(t *testing.T, gw *server.Server, match string) client.Snapshot {
	t.Helper()
	return client.Snapshot(getSnapshot(t, gw, match))
}

// reconnectUnderLoad: clients keep losing their connection (one cut every 20 ms, at
// random) while the publisher runs at rate deltas a second; they reconnect with since and
// must be recovered from history, every connection's seq chain unbroken (the Checker:
// rules 1 and 2 at the boundary of replay and live deltas), and end with the final state.
func reconnectUnderLoad(t *testing.T, gw *server.Server, pub bus.Publisher, catchUp bool) {
	const match, rate, clients = "fast", 1000, 8
	p := servertest.NewPublisher(pub, match)
	p.Set(t, "k0", 0)
	ws := make([]*loadClient, clients)
	for i := range ws {
		ws[i] = startLoadClient(t, fmt.Sprintf("c%d", i), gw, match, catchUp)
	}
	servertest.Eventually(t, 10*time.Second, func() error {
		for _, w := range ws {
			if w.seq.Load() == 0 {
				return fmt.Errorf("%s holds no state yet", w.name)
			}
		}
		return nil
	})
	stop := fastPublisher(t, p, rate)
	r := rand.New(rand.NewPCG(1, 2))
	cuts := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); cuts++ {
		ws[r.IntN(len(ws))].net.cut()
		time.Sleep(20 * time.Millisecond) // the pace of the fault, not a synchronisation
	}
	stop()
	final := fetchSnapshot(t, gw, match)
	servertest.Eventually(t, 20*time.Second, func() error {
		for _, w := range ws {
			if err := w.chk.Verify(final); err != nil {
				return err
			}
		}
		return nil
	})
	var dials, snaps int64 // (logged: a cut during a first snapshot fetch refetches it)
	for _, w := range ws {
		dials += w.net.dials.Load()
		snaps += w.snapshots.Load()
	}
	base := servertest.HTTPURL(gw)
	recovered := servertest.Metric(t, base, `crease_recoveries_total{result="recovered"}`)
	t.Logf("%d deltas in %d cuts: %d connections, %d snapshots, %v recovered subscribes, %v history reads", final.Seq, cuts, dials, snaps,
		recovered, servertest.Metric(t, base, `crease_history_reads_total{result="ok"}`))
	for _, res := range shard.RecoveryResults {
		if n := servertest.Metric(t, base, `crease_recoveries_total{result="`+res+`"}`); n > 0 && res != shard.RecoveryRecovered {
			// The history holds every position the clients can hold: nothing else may
			// fail them.
			t.Errorf("%v subscribes with since not recovered: %s", n, res)
		}
	}
	if recovered < float64(cuts)/4 {
		t.Errorf("%d cuts, %v subscribes recovered: the clients did not reconnect with since", cuts, recovered)
	}
}

// loadHistory keeps 10 s of the fast publisher's deltas, so that a reconnect slowed by
// the race detector on shared cores still finds its position.
var loadHistory = bus.HistoryOptions{MaxDeltas: 10000, MaxBytes: 8 << 20}

func TestReconnectUnderLoadEmbedded(t *testing.T) {
	b := bus.NewEmbeddedWith(loadHistory)
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	reconnectUnderLoad(t, gw, b, false)
}

func TestReconnectUnderLoadRedis(t *testing.T) {
	rs := redistest.Start(t)
	reg := prometheus.NewRegistry()
	newBus := func(reg prometheus.Registerer) *busredis.Bus {
		b, err := busredis.New(busredis.Options{Addrs: []string{rs.Addr()}, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
			UnsubscribeDebounce: 300 * time.Millisecond, HealthInterval: 100 * time.Millisecond, History: loadHistory})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	gw := servertest.Run(t, server.Options{Bus: newBus(reg), Loops: 2, Registerer: reg, Gatherer: reg})
	reconnectUnderLoad(t, gw, newBus(prometheus.NewRegistry()), false)
}

// The same with ?catchup=1: every recovery is one catch-up delta, which the Go client
// applies as the contract says.
func TestReconnectUnderLoadCatchUp(t *testing.T) {
	b := bus.NewEmbeddedWith(loadHistory)
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	reconnectUnderLoad(t, gw, b, true)
	if n := servertest.Metric(t, servertest.HTTPURL(gw), `crease_catchups_total{result="composed",source="replay"}`); n == 0 {
		t.Error("no replay was composed into a catch-up delta")
	}
}
