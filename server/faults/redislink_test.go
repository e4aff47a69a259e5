package faults_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus/redis"
	"crease/internal/heaptest"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
)

// redisGateway is a gateway whose Redis bus goes through a proxy to a real redis-server,
// and a publisher that talks to that Redis directly.
type redisGateway struct {
	gw   *server.Server
	link *proxy
	pub  *redis.Bus
}

func startRedisGateway(t *testing.T) *redisGateway {
	t.Helper()
	rs := redistest.Start(t)
	link := newProxy(t, "redis", rs.Addr())
	reg := prometheus.NewRegistry()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gb, err := redis.New(redis.Options{Addrs: []string{link.Addr()}, Registerer: reg, Logger: quiet,
		HealthInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gw := servertest.Run(t, server.Options{Bus: gb, Loops: 2, Registerer: reg, Gatherer: reg})
	pub, err := redis.New(redis.Options{Addrs: []string{rs.Addr()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	servertest.Eventually(t, 10*time.Second, servertest.Cond("the gateway's Redis bus ready", gb.Ready))
	return &redisGateway{gw: gw, link: link, pub: pub}
}

// Slow Redis: the gateway's link to Redis has 150 ± 100 ms of latency each way (the
// subscription, its confirmations, every message and the snapshot GETs), while the
// publisher writes to Redis at full speed. Deltas arrive late but in order; snapshots
// fetched through the slow link must still agree with the deltas around them.
func TestSlowRedis(t *testing.T) {
	r := startRedisGateway(t)
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := realMatch(t)
	r.link.both("slow", "latency", map[string]any{"latency": 150, "jitter": 100})

	clients := startClients(t, pick(8, 40), "slowredis-", servertest.WSURL(r.gw, ""), servertest.HTTPURL(r.gw), m.ID())
	stop := replay(t, r.pub, m, 20)
	time.Sleep(pick(6*time.Second, 90*time.Second))
	stop()

	final := snapshot(t, r.gw, m.ID())
	if final.Seq < 20 {
		t.Fatalf("only %d deltas published", final.Seq)
	}
	converge(t, final, 20*time.Second, clients...)
	logStats(t, m.ID(), clients...)
	t.Logf("gateway: lost %v (bus %v, gap %v), resyncs %v", metric(t, r.gw, "crease_bus_lost_total"),
		metric(t, r.gw, "crease_bus_lost_total", `reason="bus"`), metric(t, r.gw, "crease_bus_lost_total", `reason="gap"`),
		metric(t, r.gw, "crease_resyncs_total"))
	t.Logf("fan-out latency: %v s summed over %v frames", metric(t, r.gw, "crease_fanout_latency_seconds_sum"),
		metric(t, r.gw, "crease_fanout_latency_seconds_count"))
	heap.Check(t, 48<<20)
	freshClient(t, r.gw, final)
}

// Redis link cut mid-message: while a real match replays, the gateway's Redis link is
// cut several times: limit_data lets a random few hundred bytes more through and then
// closes the link, so the cut falls inside a published message most of the time (the
// reply is truncated), and once more with reset_peer (a TCP RST). rueidis reconnects
// and resubscribes; each resubscription must reach the clients as a `resync`, so that
// no delta published while the link was down is lost silently.
func TestRedisLinkCutMidMessage(t *testing.T) {
	r := startRedisGateway(t)
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := realMatch(t)

	clients := startClients(t, pick(6, 30), "cut-", servertest.WSURL(r.gw, ""), servertest.HTTPURL(r.gw), m.ID())
	stop := replay(t, r.pub, m, 25)
	servertest.Eventually(t, 10*time.Second, servertest.Cond("every client live", func() bool {
		for _, w := range clients {
			if w.seq.Load() == 0 {
				return false
			}
		}
		return true
	}))
	cuts := pick(3, 20)
	for i := range cuts {
		time.Sleep(time.Second)
		before := metric(t, r.gw, "crease_bus_resubscribes_total")
		resubscribed := servertest.Cond("the bus to resubscribe after the cut", func() bool {
			return metric(t, r.gw, "crease_bus_resubscribes_total") > before
		})
		if i == cuts-1 {
			// A reset at once, on the link and on every reconnect while it stays: for
			// 300 ms of the match, then the link is let back.
			r.link.add("rst", "reset_peer", "downstream", map[string]any{"timeout": 0})
			time.Sleep(300 * time.Millisecond)
			r.link.remove("rst")
		} else {
			// Delta frames of this match are ~300-700 bytes: a cut after 257..1279
			// bytes lands inside one most of the time. The cut comes once that much has
			// flowed, which on a loaded machine can take a while: the toxic stays until
			// it has cut.
			cut := linkCuts.Load()
			r.link.add("cut", "cut_after", "downstream", map[string]any{"bytes": 257 + (i*397)%1023})
			servertest.Eventually(t, 30*time.Second, servertest.Cond("the link cut", func() bool { return linkCuts.Load() > cut }))
			r.link.remove("cut")
		}
		servertest.Eventually(t, 30*time.Second, resubscribed)
	}
	time.Sleep(time.Second)
	stop()

	final := snapshot(t, r.gw, m.ID())
	converge(t, final, 20*time.Second, clients...)
	logStats(t, m.ID(), clients...)
	t.Logf("bus: reconnects %v, resubscribes %v, invalid %v; gateway lost{reason}: %v",
		metric(t, r.gw, "crease_bus_reconnects_total"), metric(t, r.gw, "crease_bus_resubscribes_total"),
		metric(t, r.gw, "crease_bus_invalid_total"), metric(t, r.gw, "crease_bus_lost_total"))
	for _, w := range clients {
		if s := w.chk.Stats(m.ID()); s.Resyncs+s.Gaps == 0 {
			t.Errorf("%s never resynced across %d link cuts", w.name, cuts)
		}
	}
	heap.Check(t, 48<<20)
	freshClient(t, r.gw, final)
}
