package redisgw_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"crease/bus"
	"crease/internal/redistest"
)

// BenchmarkLatency measures publish-to-client latency through real Redis: one gateway,
// CREASE_CONNS gorilla connections (default 2,000) subscribed to one match, 2 deltas/s
// for CREASE_SECONDS (default 20). Latency is the client's receive time minus the
// delta's ts (set just before the publish). One iteration is the whole run:
//
//	go test -run '^$' -bench Latency -benchtime 1x ./server/redisgw/
func BenchmarkLatency(b *testing.B) {
	for range b.N {
		measureLatency(b)
	}
}

func measureLatency(t *testing.B) {
	conns := envInt("CREASE_CONNS", 2000)
	seconds := envInt("CREASE_SECONDS", 20)
	srv := redistest.Start(t)
	g := startGateway(t, []string{srv.Addr()}, gwOpts{})
	pub := newBus(t, []string{srv.Addr()}, false, "pub", nil)
	const match = "lat"

	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64 // deltas received over all connections
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for i := 0; i < conns; i++ {
		c, _, err := dialer.Dial(g.ws()+"?match="+match, nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			go func() { <-ctx.Done(); c.Close() }()
			var mine []time.Duration
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					break
				}
				now := time.Now()
				var f struct {
					Type string `json:"type"`
					TS   int64  `json:"ts"`
				}
				if json.Unmarshal(data, &f) == nil && f.Type == "delta" {
					mine = append(mine, now.Sub(time.UnixMicro(f.TS)))
					got.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	eventually(t, 10*time.Second, "all connections", func() bool { return g.s.Conns() == int64(conns) })
	eventually(t, 10*time.Second, "the Redis subscription", func() bool {
		return slices.Equal(pubsub(t, srv.Cli, "CHANNELS"), []string{channel(match)})
	})
	n := 2 * seconds
	tick := time.NewTicker(500 * time.Millisecond)
	for seq := 1; seq <= n; seq++ {
		<-tick.C
		ts := time.Now().UnixMicro()
		frame := fmt.Sprintf(`{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":"high","ts":%d,"patch":{"runs":%d}}`, match, seq, ts, seq)
		err := pub.PublishDelta(context.Background(), bus.Delta{Match: match, Epoch: "e1", Seq: uint64(seq), State: []byte(fmt.Sprintf(`{"runs":%d}`, seq)), Frame: []byte(frame)})
		if err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	eventually(t, 10*time.Second, "every delta at every connection", func() bool { return got.Load() >= int64(conns*n) })
	cancel()
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no deltas received")
	}
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	t.ReportMetric(float64(len(lat))/float64(conns*n), "received/sent")
	t.ReportMetric(q(0.50).Seconds()*1e3, "p50-ms")
	t.ReportMetric(q(0.99).Seconds()*1e3, "p99-ms")
	t.ReportMetric(lat[len(lat)-1].Seconds()*1e3, "max-ms")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
