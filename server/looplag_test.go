package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"crease/server"
	"crease/server/servertest"
)

// TestLoopLagShowsABlockedLoop blocks every event loop for 600 ms with a task and checks
// that crease_loop_lag_seconds of each loop records more probes that waited above 0.5 s
// than before (the probe is posted every 50 ms, so the ones posted in the first 100 ms of
// the block wait at least 500 ms). Every loop has its shard, ticks and metrics from the
// start (the gateway reaches each loop before it listens), with no client at all.
func TestLoopLagShowsABlockedLoop(t *testing.T) {
	s := servertest.Run(t, server.Options{Loops: 2})
	over := func(loop int) (slow, total float64) {
		lbl := fmt.Sprintf(`loop="%d"`, loop)
		b := metricValues(t, s, "crease_loop_lag_seconds_bucket")
		total = b[lbl+`,le="+Inf"`]
		return total - b[lbl+`,le="0.5"`], total
	}
	waitFor(t, func() bool {
		_, a := over(0)
		_, b := over(1)
		return a >= 3 && b >= 3
	}, "loop-lag samples on both loops")
	// A loaded machine may delay a probe by itself: count from what is there now.
	slow0, _ := over(0)
	slow1, _ := over(1)
	const block = 600 * time.Millisecond
	var wg sync.WaitGroup
	wg.Add(2)
	server.ExecuteOnLoops(s, func(int) { defer wg.Done(); time.Sleep(block) }) // the fault: a loop that blocks
	wg.Wait()
	waitFor(t, func() bool {
		a, _ := over(0)
		b, _ := over(1)
		return a > slow0 && b > slow1
	}, "probes over 0.5 s on both loops after a 600 ms block")
	lag := metricValues(t, s, "crease_loop_lag_seconds_bucket")
	t.Logf("after the block: loop 0 ≤0.5s %v, ≤1s %v, all %v", lag[`loop="0",le="0.5"`], lag[`loop="0",le="1"`], lag[`loop="0",le="+Inf"`])
}
