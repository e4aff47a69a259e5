package redisgw_test

import (
	"context"
	"crease/internal/redistest"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	busredis "crease/bus/redis"
	"crease/client"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
)

var quiet = slog.New(slog.DiscardHandler)

// gateway is a running gateway on a Redis bus.
type gateway struct {
	s   *server.Server
	bus *busredis.Bus
}

func (g *gateway) ws() string   { return servertest.WSURL(g.s, "") }
func (g *gateway) http() string { return servertest.HTTPURL(g.s) }

type gwOpts struct {
	cluster        bool
	node           string
	viewerInterval time.Duration
}

// newBus makes a Redis bus for a gateway or a publisher.
func newBus(t testing.TB, addrs []string, cluster bool, node string, reg prometheus.Registerer) *busredis.Bus {
	t.Helper()
	b, err := busredis.New(busredis.Options{
		Addrs: addrs, Cluster: cluster, Registerer: reg, Logger: quiet, NodeID: node,
		UnsubscribeDebounce: 300 * time.Millisecond,
		HealthInterval:      100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("redis bus: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startGateway runs a gateway whose /metrics shows the bus's metrics too.
func startGateway(t testing.TB, addrs []string, o gwOpts) *gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	if o.node == "" {
		o.node = "gw"
	}
	b := newBus(t, addrs, o.cluster, o.node, reg)
	s := servertest.Run(t, server.Options{Bus: b, Registerer: reg, Gatherer: reg, Loops: 2,
		Node: o.node, ViewerInterval: o.viewerInterval})
	return &gateway{s: s, bus: b}
}

// watcher is a Go client with its own Checker.
type watcher struct {
	c       *client.Client
	check   *client.Checker
	mu      sync.Mutex
	events  [][]byte
	done    chan struct{}
	unsub   func()
	cancel  context.CancelFunc
	gateway *gateway
}

// watchEach starts n watchers of match, each on the next of gws in turn.
func watchEach(t testing.TB, gws []*gateway, match string, n int) []*watcher {
	t.Helper()
	ws := make([]*watcher, n)
	for i := range ws {
		ws[i] = watch(t, gws[i%len(gws)], match)
	}
	return ws
}

// watch connects a client to g, subscribes to match and runs it until the test ends.
func watch(t testing.TB, g *gateway, match string) *watcher {
	t.Helper()
	w := &watcher{check: client.NewChecker(), done: make(chan struct{}), gateway: g}
	c, err := client.New(client.Options{
		URL: g.ws(), BaseHTTP: g.http(), Observer: w.check,
		Backoff: client.Backoff{Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond, InitialSpread: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.c = c
	c.OnEvent(func(_ string, raw []byte) {
		w.mu.Lock()
		w.events = append(w.events, raw)
		w.mu.Unlock()
	})
	if w.unsub, err = c.Subscribe(match, func(client.State) {}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { defer close(w.done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// viewerEvents returns the viewers counts of the `viewers` events received.
func (w *watcher) viewerEvents() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int64
	for _, raw := range w.events {
		var ev struct {
			Kind    string `json:"kind"`
			Viewers int64  `json:"viewers"`
		}
		if json.Unmarshal(raw, &ev) == nil && ev.Kind == "viewers" {
			out = append(out, ev.Viewers)
		}
	}
	return out
}

// snapshot fetches the snapshot of match from a gateway.
func snapshot(t testing.TB, g *gateway, match string) client.Snapshot {
	t.Helper()
	return servertest.MustGetJSON[client.Snapshot](t, g.http()+"/v1/matches/"+match)
}

func get(t testing.TB, url string) ([]byte, int) {
	t.Helper()
	a := servertest.Fetch(t, nil, url)
	return a.Body, a.Status
}

// metric sums every series of name on a gateway's /metrics; a name not there fails t.
func metric(t testing.TB, g *gateway, name string) float64 {
	t.Helper()
	m := servertest.Scrape(t, g.http())
	if !m.Has(name) {
		t.Fatalf("metric %s not in /metrics", name)
	}
	return m.Sum(name)
}

// oneGateway starts one Redis, a gateway on it and a publisher's bus.
func oneGateway(t testing.TB) (*redistest.Server, *gateway, *busredis.Bus) {
	t.Helper()
	srv := redistest.Start(t)
	addrs := []string{srv.Addr()}
	return srv, startGateway(t, addrs, gwOpts{}), newBus(t, addrs, false, "pub", nil)
}

// replayOnTwoGateways starts one Redis, two gateways on it (nodes gw1 and gw2) with 10
// clients each following the real match, and a publisher replaying it at speed; stop
// ends the replay.
func replayOnTwoGateways(t testing.TB, speed float64) (srv *redistest.Server, gws []*gateway, m *ingest.Match, ws []*watcher, stop func() error) {
	t.Helper()
	srv = redistest.Start(t)
	addrs := []string{srv.Addr()}
	gws = []*gateway{startGateway(t, addrs, gwOpts{node: "gw1"}), startGateway(t, addrs, gwOpts{node: "gw2"})}
	m = servertest.RealMatch(t)
	ws = watchEach(t, gws, m.ID(), 10)
	stop = servertest.Replay(t, newBus(t, addrs, false, "pub", nil), m, speed)
	return srv, gws, m, ws, stop
}

// waitReadyz waits until g's /readyz answers code.
func waitReadyz(t testing.TB, g *gateway, code int, within time.Duration) {
	t.Helper()
	servertest.Eventually(t, within, func() error {
		if _, got := get(t, g.http()+"/readyz"); got != code {
			return fmt.Errorf("/readyz %d, want %d", got, code)
		}
		return nil
	})
}

// verifyAll waits until every watcher's rebuilt state is the final snapshot of match
// (read from gateways[0]) and fails with the violations otherwise.
func verifyAll(t testing.TB, match string, gws []*gateway, ws []*watcher) {
	t.Helper()
	final := snapshot(t, gws[0], match)
	for _, g := range gws[1:] {
		if s := snapshot(t, g, match); s.Seq != final.Seq {
			t.Fatalf("gateways disagree on the snapshot: seq %d and %d", final.Seq, s.Seq)
		}
	}
	for i, w := range ws {
		servertest.Eventually(t, 10*time.Second, func() error {
			if err := w.check.Verify(final); err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			return nil
		})
	}
	t.Logf("%d clients verified at seq %d", len(ws), final.Seq)
}

func channel(match string) string { return fmt.Sprintf("crease:{%s}", match) }

// applied waits until w has applied n deltas of match.
func applied(t testing.TB, w *watcher, match string, n int) {
	t.Helper()
	servertest.Reaches(t, 20*time.Second, "deltas of "+match+" the client applied:", uint64(n), func() uint64 {
		return w.check.Stats(match).Applied
	})
}

// storedSeq reads the seq Redis stores for match (0 when it holds none).
func storedSeq(t testing.TB, srv *redistest.Server, match string) uint64 {
	t.Helper()
	out, err := srv.Cli("GET", channel(match)+":seq")
	if err != nil {
		return 0
	}
	_, seq, _ := strings.Cut(strings.TrimSpace(out), ":")
	n, _ := strconv.ParseUint(seq, 10, 64)
	return n
}

// publishSome replays m through pub as fast as it goes until Redis stores seq n, then
// stops: a match with a stored snapshot and no more deltas.
func publishSome(t testing.TB, srv *redistest.Server, pub bus.Publisher, m *ingest.Match, n uint64) {
	t.Helper()
	stop := servertest.Replay(t, pub, m, 0)
	servertest.Eventually(t, 20*time.Second, servertest.Cond("the match stored", func() bool { return storedSeq(t, srv, m.ID()) >= n }))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
