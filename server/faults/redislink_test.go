package faults_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"crease/bus/redis"
	"crease/internal/heaptest"
	"crease/internal/redistest"
	"crease/server"
	"crease/server/servertest"
)

// redisGateway is a gateway whose Redis bus goes through a proxy to a real redis-server,
// and a publisher that talks to that Redis directly.
type redisGateway struct {
	gw    *server.Server
	link  *proxy
	pub   *redis.Bus
	admin rueidis.Client // straight to the redis-server, for CLIENT LIST
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
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rs.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	servertest.Eventually(t, 10*time.Second, servertest.Cond("the gateway's Redis bus ready", gb.Ready))
	return &redisGateway{gw: gw, link: link, pub: pub, admin: admin}
}

// subscribers returns the ids of the connections that redis-server holds with a
// subscription: the gateway's, which come through the link (the publisher subscribes
// to nothing).
func (r *redisGateway) subscribers(t *testing.T) map[string]bool {
	t.Helper()
	list, err := r.admin.Do(context.Background(), r.admin.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(list, "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		if n := f["sub"] + f["psub"] + f["ssub"]; strings.Trim(n, "0") != "" {
			ids[f["id"]] = true
		}
	}
	return ids
}

// Slow Redis: the gateway's link to Redis has 150 ± 100 ms of latency each way (the
// subscription, its confirmations, every message and the snapshot GETs), while the
// publisher writes to Redis at full speed. Deltas arrive late but in order; snapshots
// fetched through the slow link must still agree with the deltas around them.
func TestSlowRedis(t *testing.T) {
	r := startRedisGateway(t)
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := servertest.ShortestMatch(t)
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
	m := servertest.ShortestMatch(t)

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
		// Live deltas reach every client between two cuts.
		fed(t, clients)
		before := metric(t, r.gw, "crease_bus_resubscribes_total")
		subscribed := r.subscribers(t)
		if len(subscribed) == 0 {
			t.Fatal("no subscribed connection on redis-server")
		}
		name := "cut"
		if i == cuts-1 {
			name = "rst"
			r.link.add(name, "reset_peer", "downstream", map[string]any{"timeout": 0})
		} else {
			// Delta frames of this match are ~300-700 bytes: a cut after 257..1279
			// bytes lands inside one most of the time.
			r.link.add(name, "limit_data", "downstream", map[string]any{"bytes": 257 + (i*397)%1023})
		}
		// Both toxics act on the bytes that come down the link: the toxic stays until
		// the link was cut, however long the replay takes to send them (it pauses
		// between two runs of the match), which redis-server shows by dropping the
		// subscribed connection.
		servertest.Eventually(t, 20*time.Second, func() error {
			now := r.subscribers(t)
			for id := range subscribed {
				if !now[id] {
					return nil
				}
			}
			return fmt.Errorf("subscribed connections %v still there", subscribed)
		})
		r.link.remove(name)
		servertest.Eventually(t, 20*time.Second, servertest.Cond("the bus to resubscribe after the cut", func() bool {
			return metric(t, r.gw, "crease_bus_resubscribes_total") > before
		}))
	}
	fed(t, clients)
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

// fed waits until every client has received a delta (or a snapshot) newer than what it
// held when called: the live feed reaches them.
func fed(t *testing.T, clients []*watched) {
	t.Helper()
	held := make([]int64, len(clients))
	for i, w := range clients {
		held[i] = w.states.Load()
	}
	servertest.Eventually(t, 20*time.Second, func() error {
		for i, w := range clients {
			if w.states.Load() <= held[i] {
				return fmt.Errorf("%s got no state since %d", w.name, held[i])
			}
		}
		return nil
	})
}
