package heaptest

import (
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// LiveHeap returns the bytes of live heap objects after two full collections (the
// second sweeps what the first's finalizers freed).
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// heapObjects is the runtime/metrics name of the heap's objects, live and not yet
// swept: reading it stops nothing, unlike runtime.ReadMemStats.
const heapObjects = "/memory/classes/heap/objects:bytes"

// HeapNow returns the heap's objects now, without collecting first.
func HeapNow() uint64 {
	s := []metrics.Sample{{Name: heapObjects}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Watch is a running heap sampler (WatchHeap).
type Watch struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// WatchHeap samples the heap's objects every interval until Stop (or the end of the
// test), keeping the peak.
func WatchHeap(t testing.TB, every time.Duration) *Watch {
	w := &Watch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		s := []metrics.Sample{{Name: heapObjects}}
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > w.peak.Load() {
				w.peak.Store(v)
			}
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

// Stop ends the sampling (at once, and only once) and returns the peak.
func (w *Watch) Stop() uint64 {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.peak.Load()
}

// Check stops the sampling, logs the peak and fails t if it was over bound.
func (w *Watch) Check(t testing.TB, bound uint64) {
	t.Helper()
	peak := w.Stop()
	t.Logf("peak heap objects (everything in this process): %.1f MiB, bound %d MiB", float64(peak)/(1<<20), bound>>20)
	if peak > bound {
		t.Errorf("heap objects peaked at %.1f MiB, over the %d MiB bound", float64(peak)/(1<<20), bound>>20)
	}
}

// RawClient opens a blocking client socket to addr (IPv4) with plain syscalls and
// sends a WebSocket handshake for /ws?query. It returns the socket's descriptor, which
// the caller closes (syscall.Close).
func RawClient(addr *net.TCPAddr, query string) (int, error) {
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
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := syscall.Write(fd, []byte(req)); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ConnCost measures what conns idle connections cost a server in this process, the
// same way for crease and for the bare baseline: it opens conns raw clients to addr
// (the j-th follows match m<j%10>), calls opened, which returns once the server has
// upgraded them all (or fails b), lets the server's loops finish their bookkeeping
// (queues are released on the next tick) and reports the live heap it grew by per
// connection (heap-B/conn) and everything allocated while the connections opened,
// kept or not, per connection (alloc-B/conn: both ends, the raw clients allocate a
// little too; garbage of a handshake is what the collector must catch up with during
// a connection storm). held, if not nil, runs after the measurement while the
// connections are still open; then the clients are closed.
func ConnCost(b *testing.B, addr *net.TCPAddr, conns int, opened, held func()) {
	b.Helper()
	before := LiveHeap()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	fds := make([]int, 0, conns)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for j := 0; j < conns; j++ {
		fd, err := RawClient(addr, fmt.Sprintf("match=m%d", j%10))
		if err != nil {
			b.Fatalf("client %d: %v", j, err)
		}
		fds = append(fds, fd)
	}
	opened()
	time.Sleep(1200 * time.Millisecond)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	after := LiveHeap()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(conns), "heap-B/conn")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(conns), "alloc-B/conn")
	if held != nil {
		held()
	}
}
