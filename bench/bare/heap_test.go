package bare

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"crease/internal/heaptest"
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
		before := heaptest.LiveHeap()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		fds := make([]int, 0, conns)
		for j := 0; j < conns; j++ {
			fd, err := heaptest.RawClient(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, fmt.Sprintf("match=m%d", j%10))
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
		after := heaptest.LiveHeap()
		b.ReportMetric(float64(int64(after)-int64(before))/conns, "heap-B/conn")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/conns, "alloc-B/conn")
		for _, fd := range fds {
			syscall.Close(fd)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
