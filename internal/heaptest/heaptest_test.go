package heaptest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"crease/server/servertest"
)

var sink [][]byte

// A watch sees an allocation that is freed again before Stop.
func TestWatchHeapKeepsThePeak(t *testing.T) {
	runtime.GC() // no garbage in the baseline: what is read below is sink's
	base := HeapNow()
	w := WatchHeap(t, time.Millisecond)
	sink = make([][]byte, 64)
	for i := range sink {
		sink[i] = make([]byte, 1<<20)
	}
	// While sink is live every sample holds its 64 MiB: wait for the next one.
	servertest.Eventually(t, 10*time.Second, func() error {
		if p := w.peak.Load(); p < base+48<<20 {
			return fmt.Errorf("peak %d, want at least %d", p, base+48<<20)
		}
		return nil
	})
	sink = nil
	runtime.GC()
	if peak := w.Stop(); peak < base+48<<20 {
		t.Fatalf("peak %d fell after the allocation was freed", peak)
	}
	if w.Stop() != w.peak.Load() {
		t.Fatal("a second Stop changed the peak")
	}
}

// RawClient's handshake is a valid WebSocket upgrade request.
func TestRawClientSendsAHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err := RawClient(ln.Addr().(*net.TCPAddr), "match=m1")
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.String() != "/ws?match=m1" || req.Header.Get("Upgrade") != "websocket" || req.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("%s %v", req.URL, req.Header)
	}
}
