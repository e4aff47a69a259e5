package bare

import (
	"fmt"
	"net"
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
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for i := 0; i < b.N; i++ {
		heaptest.ConnCost(b, addr, conns, func() {
			for j := 0; j < conns; j++ {
				select {
				case <-h.opened:
				case <-time.After(20 * time.Second):
					b.Fatalf("only %d of %d upgraded", j, conns)
				}
			}
		}, nil)
		time.Sleep(500 * time.Millisecond)
	}
}
