package faults_test

import (
	"testing"
	"time"

	"crease/client"
	"crease/internal/heaptest"
	"crease/server/servertest"
)

// Airplane mode over a 2G link, with recovery: the client links (≈50 kbit/s, 300-600 ms
// each way) go silent for 5 s while a real match replays; both sides give up (1 s
// heartbeat), the clients reconnect once the network is back and subscribe with since.
// The gateway replays what they missed from the match's history, as the deltas
// (clients without ?catchup=1) or as one catch-up delta (with it): no client fetches a
// second snapshot, and every one ends with the exact final state, no delivery rule broken.
func TestAirplaneModeRecoversFromHistory(t *testing.T) {
	b, gw := heartbeatGateway(t)
	heap := heaptest.WatchHeap(t, 50*time.Millisecond)
	m := servertest.ShortestMatch(t)
	n := newClientNet(t, gw)
	n.both("bw", "bandwidth", map[string]any{"rate": 6})
	n.both("lat", "latency", map[string]any{"latency": 450, "jitter": 150})

	var plain, catchUp []*watched
	for i := range pick(3, 15) {
		plain = append(plain, startClient(t, "plane-"+string(rune('a'+i)), n.wsURL(), n.httpURL(), m.ID()))
		catchUp = append(catchUp, startClientWith(t, "plane-catchup-"+string(rune('a'+i)), n.wsURL(), n.httpURL(), m.ID(),
			func(o *client.Options) { o.CatchUp = true }))
	}
	all := append(append([]*watched{}, plain...), catchUp...)
	stop := replay(t, b, m, 10)
	servertest.Eventually(t, 20*time.Second, servertest.Cond("every client live", func() bool {
		for _, w := range all {
			if w.seq.Load() == 0 {
				return false
			}
		}
		return true
	}))
	n.both("air", "blackhole", nil)
	servertest.Eventually(t, 20*time.Second, servertest.Cond("the gateway to close the silent connections", func() bool { return gw.Conns() == 0 }))
	time.Sleep(2 * time.Second) // the outage goes on: deltas the clients miss
	n.removeBoth("air")
	servertest.Eventually(t, 30*time.Second, servertest.Cond("every client back", func() bool {
		for _, w := range all {
			if w.conns.Load() < 2 {
				return false
			}
		}
		return true
	}))
	time.Sleep(time.Second)
	stop()

	final := snapshot(t, gw, m.ID())
	converge(t, final, 30*time.Second, all...)
	logStats(t, m.ID(), all...)
	recovered := metric(t, gw, "crease_recoveries_total", `result="recovered"`)
	composed := metric(t, gw, "crease_catchups_total", `source="replay"`, `result="composed"`)
	t.Logf("recovered %v, replays composed %v, history reads %v", recovered, composed, metric(t, gw, "crease_history_reads_total", `result="ok"`))
	for _, w := range all {
		if s := w.chk.Stats(m.ID()); s.Snapshots != 1 {
			t.Errorf("%s: %d snapshots: the reconnect was not recovered from history", w.name, s.Snapshots)
		}
	}
	if recovered < float64(len(all)) || composed < float64(len(catchUp)) {
		t.Errorf("%v subscribes recovered, %v replays composed; want at least %d and %d", recovered, composed, len(all), len(catchUp))
	}
	heap.Check(t, 48<<20)
	freshClient(t, gw, final)
}
