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
	"crease/server/servertest"
)

// BenchmarkLatency measures publish-to-client latency through real Redis: one gateway,
// CREASE_CONNS gorilla connections (default 2,000) subscribed to one match, 2 deltas/s
// for CREASE_SECONDS (default 20) per iteration. Latency is the client's receive time
// minus the delta's ts (set just before the publish); it reports the p50, p90, p99 and
// max in ms. Run it alone:
//
//	go test -run XXX -bench Latency -benchtime 1x ./server/redisgw/
func BenchmarkLatency(b *testing.B) {
	conns := envInt("CREASE_CONNS", 2000)
	seconds := envInt("CREASE_SECONDS", 20)
	srv := redistest.Start(b)
	g := startGateway(b, []string{srv.Addr()}, gwOpts{})
	pub := newBus(b, []string{srv.Addr()}, false, "pub", nil)
	const match = "lat"

	var mu sync.Mutex
	var lat []time.Duration
	var received atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for i := 0; i < conns; i++ {
		c, _, err := dialer.Dial(g.ws()+"?match="+match, nil)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
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
					received.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	servertest.Eventually(b, 10*time.Second, servertest.Cond("all connections", func() bool { return g.s.Conns() == int64(conns) }))
	servertest.Eventually(b, 10*time.Second, servertest.Cond("the gateway's Redis subscription", func() bool {
		return slices.Equal(srv.PubSub(b, "CHANNELS"), []string{channel(match)})
	}))
	n := 2 * seconds
	seq := 0
	for b.Loop() {
		tick := time.NewTicker(500 * time.Millisecond)
		for range n {
			<-tick.C
			seq++
			ts := time.Now().UnixMicro()
			frame := fmt.Sprintf(`{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":"high","ts":%d,"patch":{"runs":%d}}`, match, seq, ts, seq)
			err := pub.PublishDelta(context.Background(), bus.Delta{Match: match, Epoch: "e1", Seq: uint64(seq), State: []byte(fmt.Sprintf(`{"runs":%d}`, seq)), Frame: []byte(frame)})
			if err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
	}
	want := int64(conns * seq)
	// Every delta reaches every connection (a slow one would have been resynced, which
	// at 2 deltas/s means something is wrong).
	servertest.Eventually(b, 10*time.Second, func() error {
		if got := received.Load(); got < want {
			return fmt.Errorf("%d of %d deltas received", got, want)
		}
		return nil
	})
	cancel()
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no deltas received")
	}
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(q(0.50)), "p50-ms")
	b.ReportMetric(ms(q(0.90)), "p90-ms")
	b.ReportMetric(ms(q(0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
