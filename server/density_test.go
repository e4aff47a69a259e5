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

	"crease/server"
	"crease/server/servertest"
)

// rawClient opens a blocking client socket with plain syscalls, so that the clients cost
// the Go heap nothing and the heap growth is the gateway's alone.
func rawClient(addr *net.TCPAddr, query string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := syscall.Write(fd, []byte(req)); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIdleConnHeap reports the gateway's live heap per idle subscribed connection
// (heap-B/conn): what crease adds to gnet's own per-connection state, and gnet's own;
// and what opening one allocated in all (alloc-B/conn).
func BenchmarkIdleConnHeap(b *testing.B) {
	const conns = 4000
	s := servertest.Run(b, server.Options{Loops: 2, HandshakeRate: 1e6, HandshakeBurst: 1e6})
	addr := s.WSAddr().(*net.TCPAddr)
	for i := 0; i < b.N; i++ {
		before := liveHeap()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		fds := make([]int, 0, conns)
		for j := 0; j < conns; j++ {
			fd, err := rawClient(addr, fmt.Sprintf("match=m%d", j%10))
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
		after := liveHeap()
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
