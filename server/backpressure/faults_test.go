package backpressure_test

import (
	"testing"
	"time"

	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// TestFaultyClientsAreFreed: while the hot match runs at 200 deltas a second, clients
// that read 1 byte per second are cut as slow consumers, clients that vanish with a
// reset are freed at once (peer_gone), clients that go silent on a quiet match are
// closed by the heartbeat (idle_timeout), and the fast clients get every delta
// meanwhile.
func TestFaultyClientsAreFreed(t *testing.T) {
	const (
		trickle = 5
		resets  = 10
		silent  = 10
		fast    = 3
		cut     = 2 * time.Second
	)
	g := startGateway(t, server.Options{Loops: 2, Shard: shard.Options{Budget: 32 << 10,
		StallLimit: 500 * time.Millisecond, CutLimit: cut, Heartbeat: time.Second, SendBuffer: 16 << 10}})
	g.delta(t, "high")
	fastR := make([]*reader, fast)
	for i := range fastR {
		fastR[i] = dialFast(t, g)
	}
	for range trickle {
		r := newReader(t, g)
		c := dialRaw(t, g, 4<<10, r)
		c.pacer.pace(1, time.Second)
		go func() { _ = r.runRaw(c) }()
	}
	var gone []*rawClient
	for range resets {
		gone = append(gone, dialRaw(t, g, 4<<10, nil))
	}
	for range silent {
		// Subscribed to a match that never publishes: only pings reach them, and they
		// answer none.
		dialRawTo(t, g, "quiet", 4<<10, nil)
	}
	servertest.Eventually(t, 5*time.Second, servertest.Cond("every connection open", func() bool { return g.s.Conns() == fast+trickle+resets+silent }))

	start := time.Now()
	deltas := 0
	for time.Since(start) < 4*time.Second {
		if deltas == 100 {
			resetAt := time.Now()
			for _, c := range gone {
				c.reset()
			}
			servertest.Eventually(t, 2*time.Second, servertest.Cond("reset clients freed", func() bool {
				return g.metric(t, "crease_disconnects_total", `reason="peer_gone"`) == resets
			}))
			t.Logf("reset clients freed within %v of the resets", time.Since(resetAt).Round(time.Millisecond))
		}
		g.delta(t, "high")
		g.event(t, deltas)
		deltas++
		time.Sleep(5 * time.Millisecond)
	}
	final := g.snapshot(t)
	servertest.Eventually(t, 5*time.Second, servertest.Cond("trickling clients cut", func() bool {
		return g.metric(t, "crease_slow_consumer_cuts_total") == trickle
	}))
	servertest.Eventually(t, 5*time.Second, servertest.Cond("silent clients closed by the heartbeat", func() bool {
		return g.metric(t, "crease_disconnects_total", `reason="idle_timeout"`) == silent
	}))
	// A trickling client cannot read its socket empty within the close linger: it is
	// reset when the linger ends.
	servertest.Eventually(t, shard.DefaultCloseLinger+5*time.Second, servertest.Cond("only the fast clients left", func() bool { return g.s.Conns() == fast }))
	if got := g.metric(t, "crease_disconnects_total", `reason="slow_consumer"`); got != trickle {
		t.Errorf("slow_consumer disconnects %v, want %d", got, trickle)
	}
	for i, r := range fastR {
		servertest.Eventually(t, 10*time.Second, servertest.Cond("fast client at the final seq", func() bool { return r.seq() == final.Seq }))
		if err := r.checker.Verify(final); err != nil {
			t.Errorf("fast client %d: %v", i, err)
		}
		r.mu.Lock()
		if r.deltas != deltas || r.resyncCountLocked() != 0 {
			t.Errorf("fast client %d: %d of %d deltas, resyncs %v", i, r.deltas, deltas, r.resyncs)
		}
		r.mu.Unlock()
	}
	servertest.Eventually(t, 2*time.Second, servertest.Cond("pending bytes back to zero", func() bool { return g.metric(t, "crease_pending_bytes") == 0 }))
	t.Logf("%d deltas in %v; disconnects: peer_gone %v, slow_consumer %v, idle_timeout %v", deltas,
		time.Since(start).Round(time.Millisecond), g.metric(t, "crease_disconnects_total", `reason="peer_gone"`),
		g.metric(t, "crease_disconnects_total", `reason="slow_consumer"`), g.metric(t, "crease_disconnects_total", `reason="idle_timeout"`))
}
