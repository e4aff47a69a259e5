package faults_test

import (
	"testing"
	"time"

	"crease/bus"
	"crease/internal/heaptest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// logStats reports what the clients went through, so a run shows the fault bit.
func logStats(t *testing.T, match string, ws ...*watched) {
	t.Helper()
	for _, w := range ws {
		s := w.chk.Stats(match)
		t.Logf("%s: %d connects, %d snapshots, %d applied, %d resyncs, %d gaps, %d stale", w.name,
			w.conns.Load(), s.Snapshots, s.Applied, s.Resyncs, s.Gaps, s.Stale)
	}
}

// 2G clients: every client link (WebSocket and snapshot HTTP) is ≈50 kbit/s each way
// (6 KB/s) with 300-600 ms of latency each way (450 ± 150 ms jitter), while a real match
// replays at 30 deltas a second (a burst, faster than the
// links carry it) with its commentary. The slow links fall behind the feed:
// the gateway must shed and resync them rather than lose a delta silently or queue
// without bound, and a client connected straight alongside must be unaffected.
func TestTwoGClients(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2,
		Shard: shard.Options{StallLimit: time.Second, CutLimit: 15 * time.Second}})
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := servertest.ShortestMatch(t)
	n := newClientNet(t, gw)
	// Bandwidth first: toxics chain in the order added, and the latency toxic buffers
	// 1024 chunks, which would hide the slow link from the gateway's socket. With the
	// bandwidth toxic first the proxy stops reading and TCP pushes back, as on a phone.
	n.both("bw", "bandwidth", map[string]any{"rate": 6})
	n.both("lat", "latency", map[string]any{"latency": 450, "jitter": 150})

	slow := startClients(t, pick(6, 40), "2g-", n.wsURL(), n.httpURL(), m.ID())
	direct := startClient(t, "direct", servertest.WSURL(gw, ""), servertest.HTTPURL(gw), m.ID())
	stop := replay(t, b, m, pick(30.0, 20.0))
	time.Sleep(pick(6*time.Second, 90*time.Second))
	stop()

	final := snapshot(t, gw, m.ID())
	if final.Seq < 20 {
		t.Fatalf("only %d deltas published", final.Seq)
	}
	// The backlog in the socket buffers drains at 6 KB/s after the feed stops.
	converge(t, final, pick(30*time.Second, 3*time.Minute), append(slow, direct)...)
	logStats(t, m.ID(), append(slow, direct)...)
	t.Logf("gateway: resyncs %v, slow cuts %v, dropped %v", metric(t, gw, "crease_resyncs_total"),
		metric(t, gw, "crease_slow_consumer_cuts_total"), metric(t, gw, "crease_dropped_total"))
	if s := direct.chk.Stats(m.ID()); s.Resyncs > 0 {
		t.Errorf("the direct client was resynced %d times: slow links disturbed a fast one", s.Resyncs)
	}
	heap.Check(t, 48<<20)
	freshClient(t, gw, final)
}

// Flapping: every couple of seconds every client link is reset (reset_peer, a TCP RST,
// on both the WebSocket and the snapshot links, new connections included while it is
// on). Clients reconnect with jittered backoff and resync; the gateway must not lose a
// delta silently across the reconnects, nor leak the dead connections.
func TestFlappingLinks(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := servertest.ShortestMatch(t)
	n := newClientNet(t, gw)

	clients := startClients(t, pick(8, 40), "flap-", n.wsURL(), n.httpURL(), m.ID())
	stop := replay(t, b, m, 20)
	flaps := pick(4, 30)
	for i := range flaps {
		time.Sleep(1500*time.Millisecond + time.Duration(i%3)*300*time.Millisecond)
		n.both("reset", "reset_peer", map[string]any{"timeout": 0})
		time.Sleep(150 * time.Millisecond)
		n.removeBoth("reset")
	}
	time.Sleep(2 * time.Second)
	stop()

	final := snapshot(t, gw, m.ID())
	converge(t, final, 20*time.Second, clients...)
	logStats(t, m.ID(), clients...)
	for _, w := range clients {
		if w.conns.Load() < 2 {
			t.Errorf("%s connected %d times: the resets did not bite", w.name, w.conns.Load())
		}
	}
	// Every dead connection is gone from the gateway: only the live clients remain.
	servertest.Eventually(t, 10*time.Second, servertest.Cond("the gateway to hold only the live connections", func() bool {
		return gw.Conns() == int64(len(clients))
	}))
	heap.Check(t, 48<<20)
	freshClient(t, gw, final)
}

// Airplane mode: with a 1 s heartbeat, every client link goes silent (the blackhole
// toxic: bytes and closes vanish both ways) for 5 s, longer than the 3 heartbeats after
// which each side gives up; then the network comes back. The gateway
// must close the silent connections by itself (idle_timeout), the clients must notice
// the dead link by the missing pings, reconnect once the network is back and rebuild the
// state without loss.
func TestAirplaneMode(t *testing.T) {
	b, gw := heartbeatGateway(t)
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := servertest.ShortestMatch(t)
	n := newClientNet(t, gw)

	clients := startClients(t, pick(6, 30), "plane-", n.wsURL(), n.httpURL(), m.ID())
	direct := startClient(t, "direct", servertest.WSURL(gw, ""), servertest.HTTPURL(gw), m.ID())
	stop := replay(t, b, m, 10)
	rounds := pick(1, 5)
	for range rounds {
		servertest.Eventually(t, 10*time.Second, servertest.Cond("every client live", func() bool {
			for _, w := range clients {
				if w.seq.Load() == 0 {
					return false
				}
			}
			return true
		}))
		idleBefore := metric(t, gw, "crease_disconnects_total", `reason="idle_timeout"`)
		time.Sleep(time.Second)
		n.both("air", "blackhole", nil)
		time.Sleep(5 * time.Second)
		// By now the gateway heard nothing for over 3 heartbeats from each of them.
		if got := metric(t, gw, "crease_disconnects_total", `reason="idle_timeout"`) - idleBefore; got < float64(len(clients)) {
			t.Errorf("%v idle_timeout closes during the silence, want at least %d", got, len(clients))
		}
		n.removeBoth("air")
		time.Sleep(2 * time.Second)
	}
	stop()

	final := snapshot(t, gw, m.ID())
	converge(t, final, 20*time.Second, append(clients, direct)...)
	logStats(t, m.ID(), append(clients, direct)...)
	if s := direct.chk.Stats(m.ID()); s.Resyncs > 0 || direct.conns.Load() != 1 {
		t.Errorf("direct client: %d resyncs, %d connects; want 0 and 1", s.Resyncs, direct.conns.Load())
	}
	heap.Check(t, 48<<20)
	freshClient(t, gw, final)
}
