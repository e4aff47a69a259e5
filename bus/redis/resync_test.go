package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
)

// resyncingSink reacts to every Lost(bus) after the first as the quickest client would
// to its `resync`: it fetches the snapshot at once, before the bus goes on.
type resyncingSink struct {
	*fakeSink
	b *Bus

	mu    sync.Mutex
	seen  int
	snaps []bus.Snapshot
	errs  []error
}

func (s *resyncingSink) Lost(match string, reason bus.ResyncReason) {
	s.fakeSink.Lost(match, reason)
	s.mu.Lock()
	s.seen++
	first := s.seen == 1
	s.mu.Unlock()
	if first || reason != bus.ReasonBus {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	snap, err := s.b.Snapshot(ctx, match)
	cancel()
	s.mu.Lock()
	s.snaps, s.errs = append(s.snaps, snap), append(s.errs, err)
	s.mu.Unlock()
}

// TestResyncNeverServesASnapshotFromBeforeTheLoss reproduces, deterministically, the
// path of "rule 2 at seq 27: deltas 24..26 missing without resync" in
// server/redisgw TestRedisKilledMidMatch. There the test's own GET just before the kill
// left the gateway's snapshot cache current at the last delivered seq; deltas published
// while the gateway was resubscribing never reached it; the resubscribe's Lost(bus) went
// to the sink (the clients' `resync`) before the cache was invalidated, so a client
// quick enough got the cached, older snapshot and then the next live delta: a hole
// nobody reported. Here the deltas the gateway misses are written to the store by hand,
// and the sink fetches the snapshot from inside Lost: it must see them.
func TestResyncNeverServesASnapshotFromBeforeTheLoss(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newClosingBus(t, testOptions(srv.Addr()))
	sink := &resyncingSink{fakeSink: &fakeSink{t: t}, b: b}
	if err := b.Start(t.Context(), sink); err != nil {
		t.Fatal(err)
	}
	b.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	ctx := t.Context()
	publishSeqs(t, b, 1, 3, m1Delta)
	eventually(t, 5*time.Second, "seq 3", func() bool { return len(sink.delivered()) == 3 })
	// The cache now holds seq 3, current: a second read costs no GET.
	if s, err := b.Snapshot(ctx, "m1"); err != nil || s.Seq != 3 {
		t.Fatalf("snapshot %d %v", s.Seq, err)
	}
	gets := value(b.m.gets)
	if s, _ := b.Snapshot(ctx, "m1"); s.Seq != 3 || value(b.m.gets) != gets {
		t.Fatalf("the cache does not serve seq 3 (seq %d, %v GETs)", s.Seq, value(b.m.gets)-gets)
	}

	// Deltas 4..6 reach the store but not this gateway: published on a channel nobody
	// listens to, as while its subscription was down.
	pub, err := New(Options{Addrs: []string{srv.Addr()}, Prefix: "elsewhere", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for seq := uint64(4); seq <= 6; seq++ {
		if err := pub.PublishDelta(ctx, delta("m1", seq, "")); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"snap", "seq"} {
		if out, err := srv.Cli("RENAME", "elsewhere:{m1}:"+k, "crease:{m1}:"+k); err != nil {
			t.Fatalf("RENAME %s: %v %s", k, err, out)
		}
	}
	// Cut the gateway's connection: rueidis reconnects and resubscribes, and the
	// confirmation reports Lost(bus).
	if out, err := srv.Cli("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatalf("CLIENT KILL: %v %s", err, out)
	}
	eventually(t, 10*time.Second, "the resubscribe's Lost(bus) and its snapshot", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.snaps) > 0
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if s, err := sink.snaps[0], sink.errs[0]; err != nil || s.Seq != 6 {
		t.Fatalf("snapshot fetched on the resync: seq %d (%v), want 6: deltas 4..6 would be missing without a resync", s.Seq, err)
	}
}

// lagging drives a gateway's bus whose store lags the stream it hears, as the old
// primary of a forced failover serves the slot it lost while the gateway hears the new
// one: deltas are PUBLISHed by hand, never stored.
type lagging struct {
	t    *testing.T
	srv  *redistest.Server
	b    *Bus
	sink *fakeSink
}

// newLagging subscribes a bus to m1 and publishes deltas 1..3 through it (stored).
func newLagging(t *testing.T) *lagging {
	srv, b, sink := newSubscribedBus(t)
	eventually(t, 5*time.Second, "the subscription's Lost(bus)", func() bool { return sink.losses("m1", bus.ReasonBus) == 1 })
	publishSeqs(t, b, 1, 3, m1Delta)
	eventually(t, 5*time.Second, "seq 3", func() bool { return len(sink.delivered()) == 3 })
	return &lagging{t: t, srv: srv, b: b, sink: sink}
}

// resubscribe cuts the subscription and waits for the resubscribe's Lost(bus), the
// losses-th.
func (l *lagging) resubscribe(losses int) {
	l.t.Helper()
	if out, err := l.srv.Cli("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		l.t.Fatalf("CLIENT KILL: %v %s", err, out)
	}
	eventually(l.t, 10*time.Second, "the resubscribe's Lost(bus)", func() bool { return l.sink.losses("m1", bus.ReasonBus) == losses })
}

// heard publishes delta seq on the channel only, and waits for its delivery.
func (l *lagging) heard(seq uint64) {
	l.t.Helper()
	frame := deltaFrame("m1", seq)
	if out, err := l.srv.Cli("PUBLISH", "crease:{m1}", frame); err != nil || out != "1" {
		l.t.Fatalf("PUBLISH: %q %v", out, err)
	}
	eventually(l.t, 5*time.Second, fmt.Sprint("delta ", seq), func() bool { return slices.Contains(l.sink.delivered(), frame) })
}

// told returns what the Sink was told between the last Lost(bus) before delta seq and
// that delta.
func (l *lagging) told(seq uint64) []call {
	l.t.Helper()
	frame := deltaFrame("m1", seq)
	calls := l.sink.snapshot()
	end := slices.IndexFunc(calls, func(c call) bool { return c.data == frame })
	start := end
	for start > 0 && !(calls[start].lost && calls[start].reason == bus.ReasonBus) {
		start--
	}
	return calls[start+1 : end]
}

// toldGap fails unless the Sink heard exactly Lost(gap) between the last Lost(bus) and
// delta seq.
func (l *lagging) toldGap(seq uint64, after string) {
	l.t.Helper()
	if got := l.told(seq); len(got) != 1 || !got[0].lost || got[0].reason != bus.ReasonGap {
		l.t.Fatalf("between the resubscribe and delta %d, after %s: %+v, want Lost(gap)", seq, after, got)
	}
}

// TestFirstDeltaAfterLossMeetsTheSnapshotServed is server/failover
// TestClusterForcedFailoverPrimaryAlive ("resync{bus}, snapshot 25, delta 30") through
// the snapshot cache, without a cluster: after a resubscribe the store answers with a
// snapshot older than the stream the gateway hears next. The first delta after the loss
// must come after Lost(gap), and a snapshot behind it is "store behind", also when the
// GET was out while the delta came.
func TestFirstDeltaAfterLossMeetsTheSnapshotServed(t *testing.T) {
	t.Parallel()
	l := newLagging(t)
	b, srv, ctx := l.b, l.srv, t.Context()
	stored := func(seq uint64) {
		t.Helper()
		snap := bus.SnapshotJSON("m1", testEpoch, seq, []byte(fmt.Sprintf(`{"score":{"runs":%d}}`, seq)))
		if out, err := srv.Cli("SET", "crease:{m1}:snap", string(snap)); err != nil {
			t.Fatalf("SET: %v %s", err, out)
		}
	}
	snapshot := func(want uint64) {
		t.Helper()
		if s, err := b.Snapshot(ctx, "m1"); err != nil || s.Seq != want {
			t.Fatalf("snapshot: seq %d (%v), want %d", s.Seq, err, want)
		}
	}
	behind := func(what string) {
		t.Helper()
		if s, err := b.Snapshot(ctx, "m1"); !errors.Is(err, ErrStoreBehind) {
			t.Fatalf("%s: snapshot seq %d (%v), want ErrStoreBehind", what, s.Seq, err)
		}
	}

	// The resubscribe; the store, at 3, answers, and then the cache (no GET).
	l.resubscribe(2)
	snapshot(3)
	gets := value(b.m.gets)
	snapshot(3)
	if value(b.m.gets) != gets {
		t.Fatal("the answer after the loss was not served from the cache")
	}
	l.heard(7)
	l.toldGap(7, "snapshot 3 was served")
	behind("the store at 3 after delta 7")
	stored(7)
	snapshot(7)

	// The GET is out when the first delta after the next loss comes: nothing was served
	// before it, so no Lost, but the answer (7) is behind it (9).
	l.resubscribe(3)
	b.snaps.answered = func(string) { l.heard(9) }
	behind("the store at 7 read while delta 9 came")
	b.snaps.answered = nil
	if got := l.told(9); len(got) != 0 {
		t.Fatalf("between the resubscribe and delta 9, with no snapshot served: %+v", got)
	}
	behind("the store at 7 after delta 9")
	stored(9)
	snapshot(9)
	l.heard(10)
	if n := l.sink.losses("m1", bus.ReasonGap); n != 1 {
		t.Fatalf("%d Lost(gap), want 1", n)
	}
}

// TestFirstDeltaAfterLossMeetsTheHistoryServed: the same for a replay from the history
// (a subscribe with `since`), whose receivers hold the stored seq it ends at.
func TestFirstDeltaAfterLossMeetsTheHistoryServed(t *testing.T) {
	t.Parallel()
	l := newLagging(t)
	ctx := t.Context()
	l.resubscribe(2)
	if msgs, ok, err := l.b.History(ctx, "m1", testEpoch, 1); err != nil || !ok || len(msgs) != 2 || msgs[1].Seq != 3 {
		t.Fatalf("history after 1: %d deltas, ok %v, %v; want 2..3", len(msgs), ok, err)
	}
	l.heard(6)
	l.toldGap(6, "the history up to 3 was served")
	if msgs, ok, err := l.b.History(ctx, "m1", testEpoch, 1); err != nil || ok {
		t.Fatalf("history after 1, up to 3, after delta 6: %d deltas, ok %v, %v; want not ok (the store is behind)", len(msgs), ok, err)
	}
}
