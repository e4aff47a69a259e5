package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	busredis "crease/bus/redis"
	"crease/client"
	"crease/ingest"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
)

var quiet = slog.New(slog.DiscardHandler)

// soak reports whether the long versions run (make soak).
func soak() bool { return os.Getenv("CREASE_SOAK") != "" }

// pick returns short normally and long under CREASE_SOAK.
func pick[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

// ---- the store ----

// store makes the Redis bus options of one process (a gateway or a publisher) for one
// Redis setup.
type store func(node string, reg prometheus.Registerer) busredis.Options

func sentinelStore(s *redistest.Sentinel) store {
	return func(node string, reg prometheus.Registerer) busredis.Options {
		return busredis.Options{Addrs: s.Addrs(), Sentinel: redistest.SentinelMaster, NodeID: node, Registerer: reg}
	}
}

func clusterStore(c *redistest.Cluster) store {
	return func(node string, reg prometheus.Registerer) busredis.Options {
		return busredis.Options{Addrs: c.Addrs(), Cluster: true, NodeID: node, Registerer: reg}
	}
}

func standaloneStore(r *redistest.Server) store {
	return func(node string, reg prometheus.Registerer) busredis.Options {
		return busredis.Options{Addrs: []string{r.Addr()}, NodeID: node, Registerer: reg}
	}
}

func newBus(t testing.TB, st store, node string, reg prometheus.Registerer) *busredis.Bus {
	t.Helper()
	o := st(node, reg)
	o.Logger = quiet
	o.HealthInterval = 100 * time.Millisecond
	o.UnsubscribeDebounce = 300 * time.Millisecond
	b, err := busredis.New(o)
	if err != nil {
		t.Fatalf("redis bus of %s: %v", node, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// ---- gateways ----

type gateway struct {
	name string
	s    *server.Server
	bus  *busredis.Bus
	reg  *prometheus.Registry
}

func (g *gateway) ws() string   { return servertest.WSURL(g.s, "") }
func (g *gateway) http() string { return servertest.HTTPURL(g.s) }

// startGateways runs n gateways on the Redis bus of st, each with its own registry,
// and waits until their buses are ready.
func startGateways(t testing.TB, n int, st store) []*gateway {
	t.Helper()
	var gws []*gateway
	for i := range n {
		g := &gateway{name: fmt.Sprintf("gw%d", i+1), reg: prometheus.NewRegistry()}
		g.bus = newBus(t, st, g.name, g.reg)
		g.s = servertest.Run(t, server.Options{Bus: g.bus, Loops: 2, Registerer: g.reg, Gatherer: g.reg, Node: g.name})
		gws = append(gws, g)
	}
	servertest.Eventually(t, 15*time.Second, func() error {
		for _, g := range gws {
			if !g.bus.Ready() {
				return fmt.Errorf("%s: Redis bus not ready", g.name)
			}
		}
		return nil
	})
	return gws
}

// snapshot is GET /v1/matches/{match} on g: the snapshot, or the HTTP status.
func (g *gateway) snapshot(match string) (client.Snapshot, error) {
	var s client.Snapshot
	if err := servertest.GetJSON(g.http()+"/v1/matches/"+match, &s); err != nil {
		return s, fmt.Errorf("%s: %w", g.name, err)
	}
	return s, nil
}

// readyz is g's /readyz status code.
func (g *gateway) readyz() int {
	resp, err := http.Get(g.http() + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ---- the publisher ----

// publisher is a Redis bus used by ingest.Replay, recording every delta the store
// acknowledged: its last one is the publisher's state, which every client must end with.
type publisher struct {
	*busredis.Bus
	reg *prometheus.Registry

	halted atomic.Bool // stop asked: the next delta is not sent

	mu   sync.Mutex
	last bus.Delta
	acks []ack
}

// errHalted ends a replay at a delta boundary, so that the publisher's last
// acknowledged delta is exactly what the store holds (a canceled publish may have been
// applied without its answer arriving).
var errHalted = errors.New("publisher halted by the test")

type ack struct {
	epoch string
	seq   uint64
	at    time.Time
}

func newPublisher(t testing.TB, st store, name string) *publisher {
	t.Helper()
	p := &publisher{reg: prometheus.NewRegistry()}
	p.Bus = newBus(t, st, name, p.reg)
	return p
}

func (p *publisher) PublishDelta(ctx context.Context, d bus.Delta) error {
	if p.halted.Load() {
		return errHalted
	}
	err := p.Bus.PublishDelta(ctx, d)
	if err == nil {
		p.mu.Lock()
		p.last = d
		p.acks = append(p.acks, ack{epoch: d.Epoch, seq: d.Seq, at: time.Now()})
		p.mu.Unlock()
	}
	return err
}

// position is the last acknowledged delta's epoch and seq.
func (p *publisher) position() (string, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last.Epoch, p.last.Seq
}

// firstAckAfter is the first delta acknowledged at or after at (ok false if none yet).
func (p *publisher) firstAckAfter(at time.Time) (ack, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.acks {
		if !a.at.Before(at) {
			return a, true
		}
	}
	return ack{}, false
}

// final is the publisher's state as the snapshot every client must end with.
func (p *publisher) final() client.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return client.Snapshot{Match: p.last.Match, Epoch: p.last.Epoch, Seq: p.last.Seq, State: p.last.State}
}

// replay publishes m through p at speed deltas/s, looping, until stop, which ends it
// between two deltas and returns the replay's error (nil when stopped by stop).
func (p *publisher) replay(t testing.TB, m *ingest.Match, speed float64, resume *bus.Stored) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	p.halted.Store(false)
	go func() {
		errc <- ingest.Replay(ctx, p, m, ingest.ReplayOptions{Speed: speed, Loop: true, LoopPause: time.Second, Resume: resume})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			p.halted.Store(true)
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				cancel() // a publish stuck on a store that never came back
				err = fmt.Errorf("a publish did not return within 30 s of stop: %w", <-errc)
			}
			cancel()
			if errors.Is(err, errHalted) {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitPublished waits until the publisher has acknowledged seq (of its current epoch).
func (p *publisher) waitPublished(t testing.TB, seq uint64, within time.Duration) {
	t.Helper()
	servertest.Reaches(t, within, "the publisher's store acknowledged seq", seq, func() uint64 {
		_, got := p.position()
		return got
	})
}

// counter sums the samples of a counter (or gauge) family in reg whose labels include
// every name=value pair of labels.
func counter(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// storeResults formats the publisher's crease_store_publishes_total by result.
func (p *publisher) storeResults(t testing.TB) string {
	var parts []string
	for _, r := range bus.PublishResults {
		if v := counter(t, p.reg, "crease_store_publishes_total", "result", string(r)); v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%v", r, v))
		}
	}
	return strings.Join(parts, " ")
}

// ---- clients ----

// watched is one Go client with its Checker and the position of the state it holds.
type watched struct {
	name  string
	chk   *client.Checker
	mu    sync.Mutex
	epoch string
	seq   uint64
	conns atomic.Int64
	trace trace
}

// trace keeps what a client's Observer saw last (frames by type and position,
// snapshots), for the failure message of a client that breaks a delivery rule.
type trace struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

const traceLines = 64

func (tr *trace) add(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.start.IsZero() {
		tr.start = time.Now()
	}
	if len(tr.lines) == traceLines {
		tr.lines = tr.lines[1:]
	}
	tr.lines = append(tr.lines, fmt.Sprintf("%6dms ", time.Since(tr.start).Milliseconds())+fmt.Sprintf(format, args...))
}

func (tr *trace) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.lines, "\n")
}

// observer feeds the Checker and the trace.
type observer struct{ w *watched }

func (o observer) Connected() { o.w.trace.add("connected"); o.w.chk.Connected() }
func (o observer) Frame(raw []byte) {
	if !bytes.Contains(raw[:min(len(raw), 24)], []byte(`"event"`)) {
		// The frame's head (type, match, epoch, seq) as it came: cheap enough for
		// thousands of clients.
		o.w.trace.add("%s", raw[:min(len(raw), 110)])
	}
	o.w.chk.Frame(raw)
}
func (o observer) SnapshotRequested(match string) {
	o.w.trace.add("snapshot requested")
	o.w.chk.SnapshotRequested(match)
}
func (o observer) Snapshot(s client.Snapshot) {
	o.w.trace.add("snapshot %s:%d", s.Epoch, s.Seq)
	o.w.chk.Snapshot(s)
}

func (w *watched) position() (string, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.seq
}

// startClients runs n clients of match spread over gws until the test ends.
func startClients(t testing.TB, n int, gws []*gateway, match string) []*watched {
	t.Helper()
	ws := make([]*watched, n)
	for i := range ws {
		g := gws[i%len(gws)]
		w := &watched{name: fmt.Sprintf("client%d@%s", i, g.name), chk: client.NewChecker()}
		d := *websocket.DefaultDialer
		d.HandshakeTimeout = 5 * time.Second
		c, err := client.New(client.Options{
			URL: g.ws(), BaseHTTP: g.http(), Dialer: &d,
			HTTPClient: &http.Client{Timeout: 5 * time.Second},
			Observer:   observer{w},
			Backoff:    client.Backoff{Base: 100 * time.Millisecond, Cap: time.Second, InitialSpread: 300 * time.Millisecond},
			OnStatus: func(s client.Status) {
				if s.Phase == client.Connecting {
					w.conns.Add(1)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(match, func(s client.State) {
			w.mu.Lock()
			w.epoch, w.seq = s.Epoch, s.Seq
			w.mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		ws[i] = w
	}
	return ws
}

// waitReached waits until every client holds a state of epoch at seq or later (any
// epoch when epoch is ""), and returns when that happened.
func waitReached(t testing.TB, ws []*watched, epoch string, seq uint64, within time.Duration) time.Time {
	t.Helper()
	servertest.Eventually(t, within, func() error {
		behind := 0
		var first string
		for _, w := range ws {
			e, s := w.position()
			if s < seq || epoch != "" && e != epoch {
				if behind == 0 {
					first = fmt.Sprintf("%s holds %s:%d", w.name, e, s)
				}
				behind++
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d of %d clients not yet at %s:%d (%s)", behind, len(ws), epoch, seq, first)
		}
		return nil
	})
	return time.Now()
}

// converged measures the time from the fault to every client holding a state that the
// publisher got acknowledged after the store was back (at back), and logs it with what.
func converged(t testing.TB, what string, ws []*watched, p *publisher, fault, back time.Time) time.Duration {
	t.Helper()
	var a ack
	servertest.Eventually(t, 30*time.Second, func() error {
		var ok bool
		if a, ok = p.firstAckAfter(back); !ok {
			return fmt.Errorf("the publisher has had no delta acknowledged since the store came back %v ago", time.Since(back).Round(time.Millisecond))
		}
		return nil
	})
	at := waitReached(t, ws, a.epoch, a.seq, 30*time.Second)
	d := at.Sub(fault)
	t.Logf("%s: store back after %v, publisher's first delta after it (%s:%d) acknowledged after %v, every client (%d) holds it %v after the fault",
		what, back.Sub(fault).Round(time.Millisecond), a.epoch, a.seq, a.at.Sub(fault).Round(time.Millisecond), len(ws), d.Round(time.Millisecond))
	return d
}

// verifyEnd stops nothing: the publisher must be stopped already. Every gateway serves
// exactly the publisher's last state, and every client rebuilt it without a violation.
func verifyEnd(t testing.TB, gws []*gateway, p *publisher, ws []*watched) client.Snapshot {
	t.Helper()
	final := p.final()
	if final.Seq == 0 {
		t.Fatal("the publisher never had a delta acknowledged")
	}
	for _, g := range gws {
		// A gateway may answer 503 for a moment: the store behind what it delivered.
		servertest.Eventually(t, 15*time.Second, func() error {
			s, err := g.snapshot(final.Match)
			if err != nil {
				return err
			}
			if s.Epoch != final.Epoch || s.Seq != final.Seq {
				return fmt.Errorf("%s serves %s:%d, the publisher's last is %s:%d", g.name, s.Epoch, s.Seq, final.Epoch, final.Seq)
			}
			if eq, err := client.JSONEqual(s.State, final.State); err != nil || !eq {
				return fmt.Errorf("%s serves another state at %d than the publisher's: %s, want %s", g.name, s.Seq, s.State, final.State)
			}
			return nil
		})
	}
	servertest.Eventually(t, 20*time.Second, func() error {
		var errs []error
		for _, w := range ws {
			if v := w.chk.Violations(); len(v) > 0 {
				t.Fatalf("%s: %d delivery violations, first: %v; what it saw last:\n%s", w.name, len(v), v[0], &w.trace)
			}
			if err := w.chk.Verify(final); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", w.name, err))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%d of %d clients not at the publisher's state; first: %w", len(errs), len(ws), errs[0])
		}
		return nil
	})
	var resyncs, snaps, conns uint64
	for _, w := range ws {
		s := w.chk.Stats(final.Match)
		resyncs += s.Resyncs
		snaps += s.Snapshots
		conns += uint64(w.conns.Load())
	}
	t.Logf("%d clients at the publisher's %s:%d; over all clients: %d resyncs, %d snapshots, %d connects", len(ws), final.Epoch, final.Seq, resyncs, snaps, conns)
	return final
}

// followed asserts that each gateway's bus resubscribed (it followed the new master
// without a restart) and logs what an operator's dashboard shows.
func followed(t testing.TB, gws []*gateway, p *publisher) {
	t.Helper()
	for _, g := range gws {
		if n := counter(t, g.reg, "crease_bus_resubscribes_total"); n < 1 {
			t.Errorf("%s never resubscribed across the failover", g.name)
		}
		t.Logf("%s: resubscribes %v, master changes %v, snapshot requests behind (503) %v, resyncs{bus} %v, resyncs{gap} %v",
			g.name, counter(t, g.reg, "crease_bus_resubscribes_total"), counter(t, g.reg, "crease_bus_master_changes_total"),
			counter(t, g.reg, "crease_snapshot_requests_total", "result", "behind"),
			counter(t, g.reg, "crease_resyncs_total", "reason", "bus"), counter(t, g.reg, "crease_resyncs_total", "reason", "gap"))
	}
	t.Logf("publisher: store results %s", p.storeResults(t))
}

// ---- a replayed match ----

// replayed is a real match replayed by one publisher to clients spread over two
// gateways on one Redis setup: what every failover test starts from.
type replayed struct {
	gws  []*gateway
	pub  *publisher
	m    *ingest.Match
	ws   []*watched
	stop func() error // ends the replay (see publisher.replay)
}

// replayOpts says how a replayed match starts.
type replayOpts struct {
	clients   int
	publisher string  // the publisher's node name
	speed     float64 // deltas/s
	resume    bool    // resume the stored match first, as `crease ingest` does
	reached   uint64  // the seq every client must hold before startReplay returns
	within    time.Duration
}

// failoverReplay is the replay of the failover tests: 25 deltas/s, every client at seq
// 10 before the fault.
func failoverReplay() replayOpts {
	return replayOpts{clients: pick(10, 200), publisher: "pub", speed: 25, reached: 10, within: 20 * time.Second}
}

// startReplay starts two gateways and a publisher on st and the clients of a real
// match, replays it, and waits until every client holds o.reached.
func startReplay(t testing.TB, st store, o replayOpts) *replayed {
	t.Helper()
	r := &replayed{gws: startGateways(t, 2, st), m: servertest.RealMatch(t)}
	r.pub = newPublisher(t, st, o.publisher)
	r.ws = startClients(t, o.clients, r.gws, r.m.ID())
	var resume *bus.Stored
	if o.resume {
		resume = resumeFrom(t, r.pub, r.m.ID())
	}
	r.stop = r.pub.replay(t, r.m, o.speed, resume)
	waitReached(t, r.ws, "", o.reached, o.within)
	return r
}

// survived asserts the end of a failover the publisher rode through: every client
// converges after the store came back, the publisher publishes 10 more deltas past
// since, the replay never stopped by itself, every client ends with the publisher's
// state in epoch, and the gateways followed the new primary. reseeded: the store was
// behind and the publisher re-seeded it exactly once.
func (r *replayed) survived(t testing.TB, what string, fault, back time.Time, epoch string, since uint64, reseeded bool) {
	t.Helper()
	converged(t, what, r.ws, r.pub, fault, back)
	r.pub.waitPublished(t, since+10, 20*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("the replay stopped by itself across the failover: %v", err)
	}
	final := verifyEnd(t, r.gws, r.pub, r.ws)
	across := "failover"
	if reseeded {
		across = "re-seed"
	}
	if final.Epoch != epoch {
		t.Fatalf("the epoch changed across the %s: %s -> %s", across, epoch, final.Epoch)
	}
	if reseeded {
		if n := counter(t, r.pub.reg, "crease_store_publishes_total", "result", "reseeded_behind"); n != 1 {
			t.Errorf("crease_store_publishes_total{result=reseeded_behind} = %v, want 1 (one re-seed of the lagging store)", n)
		}
	}
	followed(t, r.gws, r.pub)
}
