package server_test

import (
	"net"
	"os"
	"runtime/pprof"
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
		var deadline time.Time
		heaptest.ConnCost(b, addr, conns, func() {
			deadline = time.Now().Add(20 * time.Second)
			for s.Conns() < conns && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if s.Conns() < conns {
				b.Fatalf("only %d of %d connections open", s.Conns(), conns)
			}
		}, func() {
			if path := os.Getenv("CREASE_HEAP_PROFILE"); path != "" {
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
		})
		for s.Conns() > 0 && time.Now().Before(deadline.Add(10*time.Second)) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
