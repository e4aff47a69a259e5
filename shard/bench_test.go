package shard

import (
	"runtime"
	"testing"
)

// BenchmarkFanout hands one bus frame to a shard with 10,000 subscribers on fake
// connections whose sockets take everything, and runs the drain that queues it on each
// and writes it: the loop-side cost of a delivery without the kernel.
func BenchmarkFanout(b *testing.B) {
	const conns = 10000
	s := newTestShard(b, Options{})
	for range conns {
		_, fc := openConn(s, -1, "hot")
		fc.discard = true
	}
	f := deltaFrame(b, "hot", 1, "high")
	s.Post(f)
	s.drainInbox() // warm the free list and scratch buffers
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for b.Loop() {
		s.Post(f)
		s.drainInbox()
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	delivered := float64(b.N) * conns
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/delivered, "ns/delivered")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/delivered, "allocs/delivered")
	b.ReportMetric(0, "ns/op")
}
