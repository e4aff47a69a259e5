package bare

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// counter counts upgraded connections so the benchmark knows when all are open.
type counter struct {
	Server
	opened chan struct{}
}

func (c *counter) OnTraffic(conn gnet.Conn) gnet.Action {
	was := conn.Context() != nil
	a := c.Server.OnTraffic(conn)
	if !was && conn.Context() != nil {
		c.opened <- struct{}{}
	}
	return a
}

func rawClient(port int, query string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_, err = syscall.Write(fd, []byte(req))
	return fd, err
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkBareIdleConnHeap reports the live heap per idle upgraded connection of the
// bare gnet + gobwas server, measured exactly like crease's BenchmarkIdleConnHeap
// (clients are raw sockets costing the Go heap nothing), for a same-run comparison.
func BenchmarkBareIdleConnHeap(b *testing.B) {
	const conns = 4000
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	h := &counter{opened: make(chan struct{}, conns)}
	go func() {
		_ = gnet.Run(h, fmt.Sprintf("tcp://127.0.0.1:%d", port), gnet.WithNumEventLoop(2))
	}()
	time.Sleep(300 * time.Millisecond)
	defer gnet.Stop(b.Context(), fmt.Sprintf("tcp://127.0.0.1:%d", port)) //nolint:staticcheck
	for i := 0; i < b.N; i++ {
		before := liveHeap()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		fds := make([]int, 0, conns)
		for j := 0; j < conns; j++ {
			fd, err := rawClient(port, fmt.Sprintf("match=m%d", j%10))
			if err != nil {
				b.Fatal(err)
			}
			fds = append(fds, fd)
		}
		for j := 0; j < conns; j++ {
			select {
			case <-h.opened:
			case <-time.After(20 * time.Second):
				b.Fatalf("only %d of %d upgraded", j, conns)
			}
		}
		time.Sleep(1200 * time.Millisecond)
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		after := liveHeap()
		b.ReportMetric(float64(int64(after)-int64(before))/conns, "heap-B/conn")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/conns, "alloc-B/conn")
		for _, fd := range fds {
			syscall.Close(fd)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
