package redisgw_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"crease/bus"
	"crease/internal/redistest"
)

// TestLatency measures publish-to-client latency through real Redis: one gateway,
// CREASE_CONNS gorilla connections (default 2,000) subscribed to one match, 2 deltas/s
// for CREASE_SECONDS (default 20). Latency is the client's receive time minus the
// delta's ts (set just before the publish). Run with CREASE_MEASURE=1.
func TestLatency(t *testing.T) {
	if os.Getenv("CREASE_MEASURE") == "" {
		t.Skip("set CREASE_MEASURE=1 to measure")
	}
	conns := envInt("CREASE_CONNS", 2000)
	seconds := envInt("CREASE_SECONDS", 20)
	srv := redistest.Start(t)
	g := startGateway(t, []string{srv.Addr()}, gwOpts{})
	pub := newBus(t, []string{srv.Addr()}, false, "pub", nil)
	const match = "lat"

	var mu sync.Mutex
	var lat []time.Duration
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
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	eventually(t, 10*time.Second, "all connections", func() bool { return g.s.Conns() == int64(conns) })
	time.Sleep(500 * time.Millisecond) // the Redis subscription and its resync
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
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no deltas received")
	}
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	t.Logf("%d conns, %d deltas: received %d of %d; publish-to-client latency p50 %v p90 %v p99 %v max %v",
		conns, n, len(lat), conns*n, q(0.50), q(0.90), q(0.99), lat[len(lat)-1])
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
