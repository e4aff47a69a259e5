package backpressure_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crease/internal/heaptest"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

func TestStalledClientsBoundedMemory(t *testing.T) {
	const (
		stalled = 500
		fast    = 20
		resumed = 20 // of the stalled, resume reading after the stall limit, before the cut limit
		budget  = 64 << 10
		rcvbuf  = 4 << 10
		sndbuf  = 16 << 10 // SO_SNDBUF on the gateway side: without it the kernel takes ~2.8 MB per stalled socket first
		stall   = 500 * time.Millisecond
		cut     = 4 * time.Second
		linger  = 5 * time.Second
	)
	// Under the race detector every loop and reader is several times slower (publishing
	// alone runs at ~100 deltas a second): a quarter of the deltas in smaller bursts tell
	// the same story within what it can do.
	deltas, burst := 2000, 20
	if raceEnabled {
		deltas, burst = 500, 5
	}
	// The gateway's clock is the test's: it stands still unless moved, so a socket found
	// full stays within the stall limit until the test says it passed, and the cut limit
	// passes only once the resumed clients have caught up, however slowly this machine
	// runs the clients, the loops and the scrapes. On the wall clock, a starved machine
	// let the cut limit pass before the resumed clients got to read.
	clock := servertest.NewClock()
	g := startGateway(t, server.Options{Loops: 2, Shard: shard.Options{Budget: budget, StallLimit: stall, CutLimit: cut, SendBuffer: sndbuf, CloseLinger: linger, Now: clock.Now}})
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
	servertest.Eventually(t, 10*time.Second, servertest.Cond("every connection open", func() bool { return g.s.Conns() == stalled+fast }))

	runtime.GC()
	base := heaptest.HeapNow()
	heap := heaptest.WatchHeap(t, 2*time.Millisecond)
	start := time.Now()
	// Bursts of 20 deltas (~6.6 KB) and 5 events: far above any real match, yet a client
	// that keeps reading is at most a burst behind, well within a 32 KiB socket and the
	// 64 KiB budget: before each burst the readers that keep up have caught up, however
	// slowly this machine runs them. BP_FULLSPEED=1 publishes without waiting (~30,000
	// deltas a second): the memory bounds still hold, but then no client on this machine
	// keeps up and the fast clients get resyncs too (justly: the burst exceeds socket
	// plus budget).
	next, events := 0, 0
	// caughtUp: every fast client has every delta published so far and, until the clock
	// moves, every event (nothing is dropped for a client that keeps up; after the clock
	// jumps, what was posted before the jump looks late and the loop may shed events at
	// dispatch, as PROTOCOL.md allows); once they read again, every resumed client has
	// every delta too.
	resumedNow := false
	caughtUp := func() error {
		wantEvents := events
		if resumedNow {
			wantEvents = -1
		}
		for i, r := range fastR {
			if err := r.caughtUp(g.seq, wantEvents); err != nil {
				return fmt.Errorf("fast client %d: %w", i, err)
			}
		}
		for i := 0; resumedNow && i < resumed; i++ {
			if err := stalledR[i].caughtUp(g.seq, -1); err != nil {
				return fmt.Errorf("resumed client %d: %w", i, err)
			}
		}
		return nil
	}
	publish := func(until int) {
		for ; next < until; next++ {
			if next%burst == 0 && os.Getenv("BP_FULLSPEED") == "" {
				servertest.Eventually(t, 30*time.Second, caughtUp)
			}
			prio := "normal"
			if next%10 == 0 {
				prio = "high"
			}
			g.delta(t, prio)
			if next%4 == 3 {
				g.event(t, events)
				events++
			}
		}
	}
	// The first half fills every stalled socket and queues deltas beyond it.
	publish(deltas / 2)
	// The clock moves half a stall limit past it: every stalled client's queued deltas
	// are shed for one resync (the budget may have shed some already). The fast clients
	// have read everything first, so that no socket of theirs is full when it does.
	// Then measure what the gateway retains for a stalled client, and resume the first
	// 20.
	servertest.Eventually(t, 30*time.Second, caughtUp)
	eventsBefore := events
	stallAt, cutAt := stall+stall/2, cut+stall/2
	clock.Advance(stallAt)
	servertest.Eventually(t, 30*time.Second, func() error {
		if n := g.metric(t, "crease_resyncs_total", `reason="slow"`); n < stalled {
			return fmt.Errorf("%v of %d stalled clients have a resync (slow)", n, stalled)
		}
		return nil
	})
	resumedAt := time.Since(start)
	runtime.GC()
	plateau := heaptest.HeapNow()
	for i := range resumed {
		go func() { _ = stalledR[i].runRaw(stalledC[i]) }()
	}
	resumedNow = true
	// The second half goes to the fast clients and the resumed ones alike.
	publish(deltas)
	published := time.Since(start)
	final := g.snapshot(t)

	for i, r := range fastR {
		servertest.Eventually(t, 30*time.Second, servertest.Cond("fast client at the final seq", func() bool { return r.seq() == final.Seq }))
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
		// Events come in order; before the clock moved, all of them.
		if len(r.events) < eventsBefore || r.events[eventsBefore-1] != eventsBefore-1 || !slices.IsSorted(r.events) {
			t.Errorf("fast client %d: events %v, want 0 to %d in order, then any of the rest in order", i, r.events, eventsBefore-1)
		}
		r.mu.Unlock()
	}
	for i := range resumed {
		r := stalledR[i]
		servertest.Eventually(t, 30*time.Second, func() error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if !r.stream.Waiting() && r.stream.Seq() == final.Seq {
				return nil
			}
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
	if n := g.metric(t, "crease_slow_consumer_cuts_total"); n != 0 {
		t.Fatalf("%v clients cut before the cut limit passed", n)
	}
	// The clock moves half a stall limit past the cut limit of the clients stalled since
	// the start; the resumed ones, whose sockets drained after stallAt, are a stall limit
	// short of theirs: they must stay.
	clock.Advance(cutAt - stallAt)
	cutWant := float64(stalled - resumed)
	servertest.Eventually(t, 30*time.Second, servertest.Cond("stalled clients cut", func() bool {
		return g.metric(t, "crease_slow_consumer_cuts_total") >= cutWant
	}))
	cutAfter := time.Since(start)
	peak := heap.Stop()

	// Client side of the cut, read by every cut client at once right after it: each
	// gets what its socket held, then the 4008 close frame, and the gateway closes the
	// socket gracefully once it has read everything; or, if it is not done within the
	// close linger, a reset: never a read that waits. A client that reads again after a
	// long stall waits for the gateway kernel's next zero-window probe, which backs off
	// with the length of the stall up to TCP_RTO_MAX (two minutes): on a loaded machine
	// the stall lasts a minute or more and the first close frame arrives tens of seconds
	// after the reads begin. That wait is what the linger bounds. So once one cut client
	// has its 4008 close frame (within the kernel's bound), the clock moves past the
	// linger and the others end at once, either way. The last data frame may be cut
	// short by a reset; whatever complete frames arrived obey rules 1 and 2. The read
	// deadline is the wall clock's: a read that waits fails instead of hanging.
	var wg sync.WaitGroup
	errs := make([]error, stalled)
	var closed atomic.Int32
	for i := resumed; i < stalled; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = stalledC[i].nc.SetReadDeadline(time.Now().Add(4 * time.Minute))
			errs[i] = stalledR[i].runRaw(stalledC[i])
			if stalledR[i].closeCode == 4008 {
				closed.Add(1)
			}
		}()
	}
	servertest.Eventually(t, 3*time.Minute, servertest.Cond("a cut client read up to the 4008 close frame", func() bool { return closed.Load() > 0 }))
	clock.Advance(linger)
	wg.Wait()
	readAt := time.Since(start)
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
				t.Errorf("cut client %d: still open after the linger (%v)", i, err)
			} else {
				t.Errorf("cut client %d: %v", i, err)
			}
		}
		for _, v := range r.checker.Violations() {
			t.Errorf("cut client %d: %v", i, v)
		}
	}
	t.Logf("cut clients: %d saw close 4008, %d EOF after whole frames, %d EOF inside a frame, %d reset", with4008, eof, partial, reset)

	if got := g.metric(t, "crease_slow_consumer_cuts_total"); got != cutWant {
		t.Errorf("cuts %v, want %v (the resumed clients must stay)", got, cutWant)
	}
	servertest.Eventually(t, 30*time.Second, func() error {
		if n := g.s.Conns(); n != fast+resumed {
			return fmt.Errorf("%d connections, want %d: the cut ones closed", n, fast+resumed)
		}
		return nil
	})
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
	t.Logf("published %d deltas + %d events in %v; every stalled client had a resync at %v; last cut at %v; the cut clients read at %v",
		deltas, events, published.Round(time.Millisecond), resumedAt.Round(time.Millisecond), cutAfter.Round(time.Millisecond), readAt.Round(time.Millisecond))
	t.Logf("heap: idle setup %.1f MiB; live while blocked %.1f MiB (+%.1f KiB per stalled connection), bound %.1f MiB; sampled peak %.1f MiB, bound %.1f MiB; unbounded buffering would hold ~%.0f MiB",
		mib(base), mib(plateau), float64(plateau-base)/stalled/1024, mib(retained), mib(peak), mib(bound), mib(uint64(stalled*deltas*330)))
	if plateau > retained {
		t.Errorf("live heap %.1f MiB while blocked, over the bound %.1f MiB", mib(plateau), mib(retained))
	}
	t.Logf("dropped: low %v, deltas %v; resyncs slow %v", lowDrops, deltaDrops, g.metric(t, "crease_resyncs_total", `reason="slow"`))
	if peak > bound {
		t.Errorf("heap peak %.1f MiB over the bound %.1f MiB", mib(peak), mib(bound))
	}

	servertest.Eventually(t, 10*time.Second, servertest.Cond("pending bytes back to zero", func() bool {
		return g.metric(t, "crease_pending_bytes") == 0
	}))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
