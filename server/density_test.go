package server_test

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"crease/internal/heaptest"
	"crease/server"
	"crease/server/servertest"
)

// BenchmarkIdleConnHeap reports the gateway's live heap per idle subscribed connection
// (heap-B/conn): what crease adds to gnet's own per-connection state, and gnet's own;
// and what opening one allocated in all (alloc-B/conn).
func BenchmarkIdleConnHeap(b *testing.B) {
	const conns = 4000
	s := servertest.Run(b, server.Options{Loops: 2, HandshakeRate: 1e6, HandshakeBurst: 1e6})
	addr := s.WSAddr().(*net.TCPAddr)
	for i := 0; i < b.N; i++ {
		before := heaptest.LiveHeap()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		fds := make([]int, 0, conns)
		for j := 0; j < conns; j++ {
			fd, err := heaptest.RawClient(addr, fmt.Sprintf("match=m%d", j%10))
			if err != nil {
				b.Fatalf("client %d: %v", j, err)
			}
			fds = append(fds, fd)
		}
		deadline := time.Now().Add(20 * time.Second)
		for s.Conns() < conns && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if s.Conns() < conns {
			b.Fatalf("only %d of %d connections open", s.Conns(), conns)
		}
		// Let the loops finish queue bookkeeping (queues are released on the next tick).
		time.Sleep(1200 * time.Millisecond)
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		after := heaptest.LiveHeap()
		if path := os.Getenv("CREASE_HEAP_PROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		b.ReportMetric(float64(int64(after)-int64(before))/conns, "heap-B/conn")
		// Everything allocated while the connections opened, kept or not (both ends:
		// the raw clients allocate a little too). Garbage of a handshake is what the
		// collector must catch up with during a connection storm.
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/conns, "alloc-B/conn")
		for _, fd := range fds {
			syscall.Close(fd)
		}
		for s.Conns() > 0 && time.Now().Before(deadline.Add(10*time.Second)) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
