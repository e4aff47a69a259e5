package backpressure_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"crease/internal/heaptest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// TestStalledClientsBoundedMemory: the budget sheds a stalled client's deltas for a
// resync by bytes alone; the cut limit and the close linger run on the shard clock
// (a servertest.Clock) that the test moves only once the resumed clients have caught
// up, so that on a loaded machine a resumed client is never cut for reading slowly and
// the cut is exactly the test's decision.
func TestStalledClientsBoundedMemory(t *testing.T) {
	const (
		stalled = 500
		fast    = 20
		resumed = 20 // of the stalled, resume reading before the cut limit
		budget  = 64 << 10
		rcvbuf  = 4 << 10
		sndbuf  = 16 << 10 // SO_SNDBUF on the gateway side: without it the kernel takes ~2.8 MB per stalled socket first
		stall   = 500 * time.Millisecond
		// The cut clients are read only once the last one is cut: a linger longer than
		// that wait lets each read its close frame even on a slow, loaded machine.
		linger = 15 * time.Second
	)
	// Under the race detector every loop and reader is several times slower (publishing
	// alone runs at ~100 deltas a second): a quarter of the deltas in smaller bursts tell
	// the same story within what it can do.
	deltas, burst, cut := 2000, 20, 2*time.Second
	if raceEnabled {
		// and the resumed clients get more time to drain before the cut limit.
		deltas, burst, cut = 500, 5, 4*time.Second
	}
	clock := servertest.NewClock()
	g := startGateway(t, server.Options{Loops: 2, Shard: shard.Options{Budget: budget, StallLimit: stall, CutLimit: cut,
		SendBuffer: sndbuf, CloseLinger: linger, Now: clock.Now}})
	g.delta(t, "high") // seq 1: every client starts from this snapshot
	fastR := make([]*reader, fast)
	for i := range fastR {
		fastR[i] = dialFast(t, g)
	}
	stalledR := make([]*reader, stalled)
	stalledC := make([]*rawClient, stalled)
	for i := range stalledC {
		stalledR[i] = newReader(t, g)
		stalledC[i] = dialRaw(t, g, rcvbuf, stalledR[i])
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("every connection open", func() bool { return g.s.Conns() == stalled+fast }))

	runtime.GC()
	base := heaptest.HeapNow()
	heap := heaptest.WatchHeap(t, 2*time.Millisecond)
	start := time.Now()
	// Once every stalled client has a resync queued (each is over the budget, and none
	// is cut: the shard clock stands still): measure what the gateway retains, then
	// resume the first 20.
	var plateau uint64
	var resumedAt time.Duration
	plateauDone := make(chan struct{})
	go func() {
		defer close(plateauDone)
		for g.metric(t, "crease_resyncs_total", `reason="slow"`) < stalled && time.Since(start) < 20*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		resumedAt = time.Since(start)
		for i := range resumed {
			go func() { _ = stalledR[i].runRaw(stalledC[i]) }()
		}
		runtime.GC()
		plateau = heaptest.HeapNow()
	}()
	// Bursts of 20 deltas (~6.6 KB) and 5 events every 10 ms: ~1,500 deltas a second,
	// ~500 KB/s to every subscriber, far above any real match yet within what a client
	// that keeps reading takes through a 32 KiB socket and the 64 KiB budget.
	// BP_FULLSPEED=1 publishes without pauses (~30,000 deltas a second): the memory
	// bounds still hold, but then no client on this machine keeps up and the fast
	// clients get resyncs too (justly: the burst exceeds socket plus budget).
	for i := range deltas {
		prio := "normal"
		if i%10 == 0 {
			prio = "high"
		}
		g.delta(t, prio)
		if i%4 == 3 {
			g.event(t, i/4)
		}
		if i%burst == burst-1 && os.Getenv("BP_FULLSPEED") == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	published := time.Since(start)
	final := g.snapshot(t)
	<-plateauDone

	for i, r := range fastR {
		servertest.Eventually(t, 20*time.Second, servertest.Cond("fast client at the final seq", func() bool { return r.seq() == final.Seq }))
		if err := r.checker.Verify(final); err != nil {
			t.Errorf("fast client %d: %v", i, err)
		}
		r.mu.Lock()
		if n := r.resyncCountLocked(); n > 0 {
			t.Errorf("fast client %d got %d resyncs %v", i, n, r.resyncs)
		}
		if r.deltas != deltas {
			t.Errorf("fast client %d: %d deltas, want %d", i, r.deltas, deltas)
		}
		r.mu.Unlock()
	}
	for i := range resumed {
		r := stalledR[i]
		servertest.Eventually(t, 30*time.Second, func() error {
			if r.seq() == final.Seq {
				return nil
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			return fmt.Errorf("resumed client %d: state at seq %d (waiting %v), final %d; %d deltas from %d, resyncs %v, close %d, %d frames, read error %v; conns %d",
				i, r.stream.Seq(), r.stream.Waiting(), final.Seq, r.deltas, r.firstSeq, r.resyncs, r.closeCode, r.frames, r.err, g.s.Conns())
		})
		if err := r.checker.Verify(final); err != nil {
			t.Errorf("resumed client %d: %v", i, err)
		}
		r.mu.Lock()
		if r.resyncs["slow"] == 0 {
			t.Errorf("resumed client %d: no resync (slow); resyncs %v, %d deltas", i, r.resyncs, r.deltas)
		}
		r.mu.Unlock()
	}
	// Past the cut limit on the shard clock, the clients still stalled are cut; the
	// clock stays there, so their sockets linger until they have read everything.
	cutWant := float64(stalled - resumed)
	clock.Advance(cut + stall)
	servertest.Eventually(t, 10*time.Second, servertest.Cond("stalled clients cut", func() bool {
		return g.metric(t, "crease_slow_consumer_cuts_total") >= cutWant
	}))
	cutAfter := time.Since(start)
	peak := heap.Stop()

	// Client side of the cut, read by every cut client at once right after it: each
	// gets what its socket held, then the 4008 close frame and EOF (a graceful close once
	// it has read everything), or a reset if it was not done within the close linger;
	// never a read that waits. The last data frame may be cut short by a reset; whatever
	// complete frames arrived obey rules 1 and 2.
	var wg sync.WaitGroup
	errs := make([]error, stalled)
	for i := resumed; i < stalled; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The shard clock stands still: the socket lingers until its client has read
			// it all, however slowly this loaded process gets to it.
			_ = stalledC[i].nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
			errs[i] = stalledR[i].runRaw(stalledC[i])
		}()
	}
	wg.Wait()

	if got := g.metric(t, "crease_slow_consumer_cuts_total"); got != cutWant {
		t.Errorf("cuts %v, want %v (the resumed clients must stay)", got, cutWant)
	}
	// Whatever still lingers is reset when the linger ends.
	clock.Advance(linger)
	servertest.Eventually(t, 10*time.Second, servertest.Cond("cut connections gone", func() bool { return g.s.Conns() == fast+resumed }))
	if got := g.metric(t, "crease_disconnects_total", `reason="slow_consumer"`); got != cutWant {
		t.Errorf("slow_consumer disconnects %v, want %v", got, cutWant)
	}

	// The bound on what is retained: Budget per connection (our lanes plus gnet's
	// buffer, which the budget covers) on top of the heap of the idle setup (the test
	// process, both ends of 520 idle connections, their readers and Checkers), plus a
	// fixed 4 MiB (scratch buffers, frames in flight, metrics). The sampled peak also
	// counts garbage not yet swept: with GOGC=100 the collector lets the heap grow to
	// twice what it found live, so the peak's bound is twice that.
	retained := base + uint64(budget*(stalled+fast)) + 4<<20
	bound := 2 * retained
	lowDrops := g.metric(t, "crease_dropped_total", `prio="low"`)
	deltaDrops := g.metric(t, "crease_dropped_total", `prio="high"`) + g.metric(t, "crease_dropped_total", `prio="normal"`)
	t.Logf("published %d deltas + %d events in %v; every stalled client had a resync at %v; last cut at %v",
		deltas, deltas/4, published.Round(time.Millisecond), resumedAt.Round(time.Millisecond), cutAfter.Round(time.Millisecond))
	t.Logf("heap: idle setup %.1f MiB; live while blocked %.1f MiB (+%.1f KiB per stalled connection), bound %.1f MiB; sampled peak %.1f MiB, bound %.1f MiB; unbounded buffering would hold ~%.0f MiB",
		mib(base), mib(plateau), float64(plateau-base)/stalled/1024, mib(retained), mib(peak), mib(bound), mib(uint64(stalled*deltas*330)))
	if plateau > retained {
		t.Errorf("live heap %.1f MiB while blocked, over the bound %.1f MiB", mib(plateau), mib(retained))
	}
	t.Logf("dropped: low %v, deltas %v; resyncs slow %v", lowDrops, deltaDrops, g.metric(t, "crease_resyncs_total", `reason="slow"`))
	if peak > bound {
		t.Errorf("heap peak %.1f MiB over the bound %.1f MiB", mib(peak), mib(bound))
	}

	var eof, reset, partial, with4008 int
	for i := resumed; i < stalled; i++ {
		r, err := stalledR[i], errs[i]
		switch {
		case r.closeCode == 4008:
			with4008++
		case r.closeCode != 0:
			t.Errorf("cut client %d: close code %d, want 4008", i, r.closeCode)
		case errors.Is(err, io.ErrUnexpectedEOF):
			partial++
		case errors.Is(err, io.EOF):
			eof++
		case errors.Is(err, syscall.ECONNRESET):
			reset++
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("cut client %d: still open after the cut (%v)", i, err)
			} else {
				t.Errorf("cut client %d: %v", i, err)
			}
		}
		for _, v := range r.checker.Violations() {
			t.Errorf("cut client %d: %v", i, v)
		}
	}
	t.Logf("cut clients: %d saw close 4008, %d EOF after whole frames, %d EOF inside a frame, %d reset", with4008, eof, partial, reset)
	if with4008 == 0 {
		t.Error("no cut client that read right after the cut got the 4008 close frame")
	}
	servertest.Eventually(t, 2*time.Second, servertest.Cond("pending bytes back to zero", func() bool {
		return g.metric(t, "crease_pending_bytes") == 0
	}))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
