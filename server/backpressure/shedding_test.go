package backpressure_test

import (
	"sync/atomic"
	"testing"
	"time"

	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// TestShedsEventsBeforeDeltas: a client reading 1 KB every 10 ms (~100 KB/s) under
// ~450 KB/s of interleaved commentary and high deltas. Commentary is dropped first; the
// deltas go on arriving until the budget is exceeded too, and then each run of lost
// deltas is covered by a `resync` before any later delta.
func TestShedsEventsBeforeDeltas(t *testing.T) {
	const budget = 16 << 10
	g := startGateway(t, server.Options{Loops: 1, Shard: shard.Options{
		Budget: budget, StallLimit: 5 * time.Second, CutLimit: 30 * time.Second, SendBuffer: 8 << 10}})
	g.delta(t, "high")
	r := newReader(t, g)
	c := dialRaw(t, g, 4<<10, r)
	c.pacer.pace(1024, 10*time.Millisecond)
	go func() { _ = r.runRaw(c) }()

	// Watch the drop counters: the sample index at which each first moved.
	var sample, lowAt, deltaAt atomic.Int64
	lowAt.Store(-1)
	deltaAt.Store(-1)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			low := g.metric(t, "crease_dropped_total", `prio="low"`)
			deltas := g.metric(t, "crease_dropped_total", `prio="high"`)
			n := sample.Add(1)
			if low > 0 && lowAt.Load() < 0 {
				lowAt.Store(n)
			}
			if deltas > 0 && deltaAt.Load() < 0 {
				deltaAt.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	const rounds = 800
	for i := range rounds {
		g.event(t, 2*i)
		g.event(t, 2*i+1)
		g.delta(t, "high")
		time.Sleep(2 * time.Millisecond)
	}
	final := g.snapshot(t)
	servertest.Eventually(t, 20*time.Second, servertest.Cond("slow client at the final seq", func() bool { return r.seq() == final.Seq }))
	close(stop)
	<-watched

	if err := r.checker.Verify(final); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	events, deltas, resyncs := len(r.events), r.deltas, r.resyncs["slow"]
	r.mu.Unlock()
	low := g.metric(t, "crease_dropped_total", `prio="low"`)
	shed := g.metric(t, "crease_dropped_total", `prio="high"`)
	t.Logf("client got %d of %d events, %d of %d deltas, %d resyncs (slow); gateway dropped %v events, %v deltas; first event drop at sample %d, first delta drop at sample %d",
		events, 2*rounds, deltas, rounds, resyncs, low, shed, lowAt.Load(), deltaAt.Load())
	if low == 0 || events >= 2*rounds {
		t.Fatal("no commentary dropped: the client was not under pressure")
	}
	if shed > 0 && resyncs == 0 {
		t.Fatal("deltas dropped without a resync")
	}
	if la, da := lowAt.Load(), deltaAt.Load(); da >= 0 && (la < 0 || la >= da) {
		t.Fatalf("first delta drop at sample %d, first event drop at %d: events must go first", da, la)
	}
}
