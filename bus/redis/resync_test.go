package redis

import (
	"context"
	"log/slog"
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
	b, err := New(testOptions(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sink := &resyncingSink{fakeSink: &fakeSink{t: t}, b: b}
	if err := b.Start(t.Context(), sink); err != nil {
		t.Fatal(err)
	}
	b.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	ctx := t.Context()
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.PublishDelta(ctx, delta("m1", seq, "")); err != nil {
			t.Fatal(err)
		}
	}
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
