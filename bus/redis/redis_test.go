package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
	"crease/server/servertest"
)

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		o    Options
		want error
	}{
		{Options{}, ErrNoAddrs},
		{Options{Addrs: []string{" "}}, ErrNoAddrs},
		{Options{Addrs: []string{"x:1"}, Prefix: "a{b"}, ErrBadPrefix},
		{Options{Addrs: []string{"x:1"}, Prefix: "a:"}, ErrBadPrefix},
		{Options{Addrs: []string{"x:1"}, UnsubscribeDebounce: -1}, ErrBadDuration},
		{Options{Addrs: []string{"x:1"}, HandoffBytes: -1}, ErrBadHandoff},
		{Options{Addrs: []string{"x:1"}, NodeID: "a b"}, ErrBadNodeID},
		{Options{Addrs: []string{"x:1"}, Sentinel: "my master"}, ErrBadSentinel},
		{Options{Addrs: []string{"x:1"}, Sentinel: "crease", Cluster: true}, ErrBadSentinel},
		{Options{Addrs: []string{"x:1"}, Sentinel: "crease", SentinelRefresh: -1}, ErrBadDuration},
	}
	for _, c := range cases {
		if _, err := c.o.withDefaults(); !errors.Is(err, c.want) {
			t.Errorf("%+v: got %v, want %v", c.o, err, c.want)
		}
	}
	o, err := Options{Addrs: []string{"x:1"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != DefaultPrefix || o.UnsubscribeDebounce != DefaultUnsubscribeDebounce ||
		o.HandoffMessages != DefaultHandoffMessages || o.HandoffBytes != DefaultHandoffBytes ||
		o.ViewerTTL != DefaultViewerTTL || o.HealthInterval != DefaultHealthInterval || o.NodeID == "" || o.Logger == nil ||
		o.SentinelRefresh != DefaultSentinelRefresh {
		t.Fatalf("defaults not filled: %+v", o)
	}
}

func TestSubscribeByInterestAndDebounce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newClosingBus(t, testOptions(srv.Addr()))
	clock := servertest.NewClock() // the debounce runs on it: the test moves it
	b.subs.now = clock.Now
	if err := b.Start(t.Context(), &fakeSink{t: t}); err != nil {
		t.Fatal(err)
	}
	debounce := b.opts.UnsubscribeDebounce

	b.Subscribe("m1")
	b.Subscribe("m2")
	b.Subscribe("bad id!") // ignored
	want := []string{"crease:{m1}", "crease:{m2}"}
	eventually(t, 5*time.Second, "both channels subscribed", func() bool {
		return slices.Equal(channels(t, srv, false), want)
	})
	if got := value(b.m.subscriptions); got != 2 {
		t.Fatalf("subscriptions gauge %v, want 2", got)
	}

	// m1 leaves and comes back within the debounce: it must stay; m2 leaves for good.
	b.Unsubscribe("m1")
	b.Unsubscribe("m2")
	b.Subscribe("m1")
	settle(t, b)
	if got := value(b.m.subscriptions); got != 2 {
		t.Fatalf("within the debounce the gauge is %v, want 2", got)
	}
	clock.Advance(debounce)
	settle(t, b)
	if got := value(b.m.subscriptions); got != 1 {
		t.Fatalf("after the debounce the gauge is %v, want 1 (m2 gone, m1 kept)", got)
	}
	eventually(t, 5*time.Second, "m2 unsubscribed after the debounce", func() bool {
		return slices.Equal(channels(t, srv, false), []string{"crease:{m1}"})
	})
	// Well past m1's debounce too: still there (nothing was stopped, so no UNSUBSCRIBE
	// can be on its way).
	clock.Advance(3 * debounce)
	settle(t, b)
	if got := value(b.m.subscriptions); got != 1 {
		t.Fatalf("after a quick resubscribe the gauge is %v, want 1", got)
	}
	if got := channels(t, srv, false); !slices.Equal(got, []string{"crease:{m1}"}) {
		t.Fatalf("after a quick resubscribe channels are %v", got)
	}

	// Unsubscribe then subscribe again after the channel is gone: back again.
	b.Unsubscribe("m1")
	settle(t, b)
	clock.Advance(debounce)
	settle(t, b)
	eventually(t, 5*time.Second, "m1 unsubscribed", func() bool { return len(channels(t, srv, false)) == 0 })
	b.Subscribe("m1")
	eventually(t, 5*time.Second, "m1 resubscribed", func() bool {
		return slices.Equal(channels(t, srv, false), []string{"crease:{m1}"})
	})
}

// settle waits until the subscription manager has applied every Subscribe and
// Unsubscribe made before, and expired what is due by its clock.
func settle(t testing.TB, b *Bus) {
	t.Helper()
	done := make(chan struct{})
	select {
	case b.subs.settle <- done:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription manager does not answer")
	}
	<-done
}

// waitSubscribed waits until the server confirms the channel of match.
func TestPublishDeliversExactBytesInOrder(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	gw, sink := newTestBus(t, testOptions(srv.Addr()))
	pub, err := New(testOptions(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := t.Context()

	gw.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	var want []string
	for seq := uint64(1); seq <= 100; seq++ {
		d := delta("m1", seq, "India v Australia")
		if err := pub.PublishDelta(ctx, d); err != nil {
			t.Fatalf("PublishDelta %d: %v", seq, err)
		}
		want = append(want, string(d.Frame))
		if seq%10 == 0 {
			ev := eventFrame("m1", fmt.Sprint("four! ", seq))
			if err := pub.PublishEvent(ctx, "m1", []byte(ev)); err != nil {
				t.Fatalf("PublishEvent: %v", err)
			}
			want = append(want, ev)
		}
	}
	eventually(t, 5*time.Second, "all messages", func() bool { return len(sink.delivered()) >= len(want) })
	if got := sink.delivered(); !slices.Equal(got, want) {
		t.Fatalf("delivered %d messages, not the published ones in order:\n got %q\nwant %q", len(got), got[:3], want[:3])
	}
	// One Lost(bus), at the subscribe confirmation and before any delivery: the gateway
	// said `subscribed` before Redis had the subscription. No other loss.
	calls := sink.snapshot()
	if first := calls[0]; first != (call{lost: true, match: "m1", reason: bus.ReasonBus}) {
		t.Fatalf("first call %+v, want Lost(m1, bus)", first)
	}
	for _, c := range calls[1:] {
		if c.lost {
			t.Fatalf("unexpected Lost: %+v", c)
		}
	}
	for _, r := range bus.DropReasons {
		if n := sink.dropped(r); n != 0 {
			t.Fatalf("%d messages dropped (%s)", n, r)
		}
	}

	snap, err := gw.Snapshot(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if wantRaw := `{"match":"m1","epoch":"e1","seq":100,"state":{"score":{"runs":100}}}`; snap.Seq != 100 || snap.Epoch != testEpoch || string(snap.Raw) != wantRaw {
		t.Fatalf("snapshot %d %s", snap.Seq, snap.Raw)
	}
	if _, err := gw.Snapshot(ctx, "nope"); !errors.Is(err, bus.ErrUnknownMatch) {
		t.Fatalf("unknown match: %v", err)
	}

	// The publisher refuses frames that do not match what they are published as.
	bad := delta("m1", 101, "")
	bad.Frame = []byte(deltaFrame("m2", 101))
	if err := pub.PublishDelta(ctx, bad); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("delta with a foreign frame: %v", err)
	}
	if err := pub.PublishEvent(ctx, "m1", []byte(deltaFrame("m1", 101))); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("event with a delta frame: %v", err)
	}
}

func TestGarbageIsCountedAndDropped(t *testing.T) {
	t.Parallel()
	srv, _, sink := newSubscribedBus(t)
	garbage := []string{
		"not json",
		deltaFrame("m2", 1), // another match's delta on m1's channel
		`{"type":"delta","match":"m1","prio":"high","ts":1,"patch":{}}`, // no seq
		`{"type":"event","match":"m1","seq":3,"prio":"low","ts":1}`,     // an event with a seq
		`{"type":"delta","match":"m1","seq":1,"prio":"high","ts":1,"patch":{"x":"` + strings.Repeat("a", bus.MaxMessageBytes) + `"}}`,
	}
	for _, g := range garbage {
		if out, err := srv.Cli("PUBLISH", "crease:{m1}", g); err != nil || out != "1" {
			t.Fatalf("PUBLISH: %q %v", out, err)
		}
	}
	good := deltaFrame("m1", 1)
	if _, err := srv.Cli("PUBLISH", "crease:{m1}", good); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the valid message", func() bool { return len(sink.delivered()) == 1 })
	if got := sink.delivered(); got[0] != good {
		t.Fatalf("delivered %q", got)
	}
	if got := sink.dropped(bus.DropInvalid); got != len(garbage) {
		t.Fatalf("invalid messages dropped %v, want %d", got, len(garbage))
	}
}

func TestSeqGapAndDuplicate(t *testing.T) {
	t.Parallel()
	srv, _, sink := newSubscribedBus(t)
	for _, seq := range []uint64{1, 2, 5, 3, 5, 6} {
		if _, err := srv.Cli("PUBLISH", "crease:{m1}", deltaFrame("m1", seq)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "seq 6", func() bool { return len(sink.delivered()) == 4 })
	want := []call{
		{lost: true, match: "m1", reason: bus.ReasonBus}, // the subscribe confirmation
		{data: deltaFrame("m1", 1)},
		{data: deltaFrame("m1", 2)},
		{lost: true, match: "m1", reason: bus.ReasonGap},
		{data: deltaFrame("m1", 5)},
		{data: deltaFrame("m1", 6)},
	}
	if got := sink.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("calls\n got %+v\nwant %+v", got, want)
	}
	if got := sink.dropped(bus.DropDuplicate); got != 2 {
		t.Fatalf("duplicates dropped %v, want 2", got)
	}
}

func TestConcurrentPublishersCannotInterleave(t *testing.T) {
	t.Parallel()
	srv, gw, sink := newSubscribedBus(t)
	const n = 200
	var wg sync.WaitGroup
	wins := make([][]uint64, 2)
	for p := range 2 {
		pub, err := New(testOptions(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= n; seq++ {
				err := pub.PublishDelta(t.Context(), delta("m1", seq, ""))
				switch {
				case err == nil:
					wins[p] = append(wins[p], seq)
				case errors.Is(err, bus.ErrSeqConflict):
				default:
					t.Errorf("publisher %d seq %d: %v", p, seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all := append(slices.Clone(wins[0]), wins[1]...)
	slices.Sort(all)
	if len(all) != n || slices.Compact(all)[n-1] != n {
		t.Fatalf("won seqs: %d and %d, together %d, want each of 1..%d once", len(wins[0]), len(wins[1]), len(all), n)
	}
	t.Logf("publisher wins: %d / %d", len(wins[0]), len(wins[1]))
	// A stale seq is refused with the sentinel.
	if err := gw.PublishDelta(t.Context(), delta("m1", 7, "")); !errors.Is(err, bus.ErrSeqConflict) {
		t.Fatalf("stale seq: %v", err)
	}
	eventually(t, 5*time.Second, "all deltas", func() bool { return len(sink.delivered()) == n })
	for i, d := range sink.delivered() {
		if d != deltaFrame("m1", uint64(i+1)) {
			t.Fatalf("delivery %d is %s", i, d)
		}
	}
	if sink.losses("m1", bus.ReasonGap) != 0 {
		t.Fatal("gap reported")
	}
}

func TestRedisKillAndRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b, sink := newTestBus(t, testOptions(srv.Addr()))
	b.Subscribe("m1")
	b.Subscribe("m2")
	waitSubscribed(t, srv, "m1", false)
	waitSubscribed(t, srv, "m2", false)
	ctx := t.Context()
	if err := b.PublishDelta(ctx, delta("m1", 1, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "seq 1", func() bool { return len(sink.delivered()) == 1 })

	srv.Kill()
	eventually(t, 5*time.Second, "Ready false", func() bool { return !b.Ready() })
	srv.Restart()
	eventually(t, 10*time.Second, "Ready true", b.Ready)
	eventually(t, 10*time.Second, "Lost(bus) for both matches", func() bool {
		return sink.losses("m1", bus.ReasonBus) >= 1 && sink.losses("m2", bus.ReasonBus) >= 1
	})
	waitSubscribed(t, srv, "m1", false)
	if got := value(b.m.reconnects); got < 1 {
		t.Fatalf("reconnects %v", got)
	}

	// The restarted Redis lost the data (no persistence). The publisher goes on with
	// seq 2: the store has no seq for m1, so the script re-seeds it there, and the
	// gateway delivers it without a gap (the resubscribe reported the loss already).
	if err := b.PublishDelta(ctx, delta("m1", 2, "")); err != nil {
		t.Fatalf("re-seeding publish: %v", err)
	}
	if got := value(b.m.publishes.WithLabelValues(string(bus.ResultReseededEmpty))); got != 1 {
		t.Fatalf("reseeded_empty %v", got)
	}
	eventually(t, 5*time.Second, "seq 2 after the restart", func() bool { return len(sink.delivered()) == 2 })
	calls := sink.snapshot()
	if last := calls[len(calls)-1]; last.data != deltaFrame("m1", 2) {
		t.Fatalf("last call %+v", last)
	}
	if sink.losses("m1", bus.ReasonGap) != 0 {
		t.Fatal("the first delta after a resubscribe must not be gap-checked")
	}
	snap, err := b.Snapshot(ctx, "m1")
	if err != nil || snap.Seq != 2 {
		t.Fatalf("snapshot after re-seeding: %+v %v", snap, err)
	}
	// Once seeded, the usual rule holds again: a stale seq is a conflict, and an older
	// publisher starting over at 1 is refused, never heard again by the gateway.
	if err := b.PublishDelta(ctx, delta("m1", 1, "")); !errors.Is(err, bus.ErrSeqConflict) {
		t.Fatalf("seq 1 after re-seeding at 2: %v", err)
	}
}

// TestSnapshotBehindDeliveredIs503 covers the window between a Redis restart without
// persistence and the publisher's next delta: Redis has no snapshot of a match whose
// deltas the gateway delivered, and answering "unknown match" (404) would tell clients
// the match never started. Snapshot says ErrStoreBehind (503, retried) until re-seeded.
func TestSnapshotBehindDeliveredIs503(t *testing.T) {
	t.Parallel()
	srv, b, sink := newSubscribedBus(t)
	ctx := t.Context()
	publishSeqs(t, b, 1, 3, m1Delta)
	eventually(t, 5*time.Second, "seq 3", func() bool { return len(sink.delivered()) == 3 })
	if _, err := srv.Cli("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Snapshot(ctx, "m1"); !errors.Is(err, ErrStoreBehind) {
		t.Fatalf("snapshot of a flushed match: %v", err)
	}
	// A match this gateway never delivered is simply unknown.
	if _, err := b.Snapshot(ctx, "m2"); !errors.Is(err, bus.ErrUnknownMatch) {
		t.Fatalf("unknown match: %v", err)
	}
	if err := b.PublishDelta(ctx, delta("m1", 4, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the re-seeded snapshot", func() bool {
		s, err := b.Snapshot(ctx, "m1")
		return err == nil && s.Seq == 4
	})
}

// TestPublishRetriesThroughOutage: a publish while Redis is down waits for it and goes
// through once Redis is back (re-seeding the empty store), instead of failing the replay.
func TestPublishRetriesThroughOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	o := testOptions(srv.Addr())
	logs := &logRecorder{}
	o.Logger = slog.New(logs)
	pub, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := t.Context()
	if err := pub.PublishDelta(ctx, delta("m1", 1, "")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	done := make(chan error, 1)
	go func() { done <- pub.PublishDelta(ctx, delta("m1", 2, "")) }()
	eventually(t, 5*time.Second, "the publish failing and retrying", func() bool {
		return logs.has("publish failed, retrying until Redis answers")
	})
	select {
	case err := <-done:
		t.Fatalf("publish returned while Redis was down: %v", err)
	default:
	}
	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish after the restart: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish did not go through after the restart")
	}
	if out, _ := srv.Cli("GET", "crease:{m1}:seq"); out != testEpoch+":2" {
		t.Fatalf("stored seq %q", out)
	}
	// A caller's deadline ends the wait with ErrNotConnected.
	srv.Kill()
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := pub.PublishDelta(dctx, delta("m1", 3, "")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("publish with Redis down past the deadline: %v", err)
	}
}

func TestUnreachableAtStartThenUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Kill()
	o := testOptions(srv.Addr())
	b, sink := newTestBus(t, o)
	b.Subscribe("m1")
	if b.Ready() {
		t.Fatal("Ready with Redis down")
	}
	if _, err := b.Snapshot(t.Context(), "m1"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Snapshot while down: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := b.PublishDelta(ctx, delta("m1", 1, "")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("PublishDelta while down: %v", err)
	}
	srv.Restart()
	eventually(t, 10*time.Second, "Ready", b.Ready)
	waitSubscribed(t, srv, "m1", false)
	if err := b.PublishDelta(t.Context(), delta("m1", 1, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "delivery", func() bool { return len(sink.delivered()) == 1 })
}

func TestSnapshotCoalescing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b, sink := newTestBus(t, testOptions(srv.Addr()))
	ctx := t.Context()
	b.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.PublishDelta(ctx, delta("m1", seq, "")); err != nil {
			t.Fatal(err)
		}
		if err := b.PublishDelta(ctx, delta("other", seq, "")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "deltas", func() bool { return len(sink.delivered()) == 3 })

	burst := func(match string) (gets float64) {
		before := value(b.m.gets)
		servertest.Burst(t, 1000, "Snapshot", func() error {
			s, err := b.Snapshot(ctx, match)
			if err == nil && s.Seq != 3 {
				err = fmt.Errorf("seq %d", s.Seq)
			}
			return err
		})
		return value(b.m.gets) - before
	}
	subscribed := burst("m1")
	t.Logf("1000 concurrent Snapshot calls of a subscribed match: %v Redis GETs (hit %v, coalesced %v, miss %v)", subscribed,
		value(b.m.snapshots.WithLabelValues("hit")), value(b.m.snapshots.WithLabelValues("coalesced")), value(b.m.snapshots.WithLabelValues("miss")))
	if subscribed > 3 {
		t.Fatalf("%v GETs for 1000 concurrent requests of a subscribed match", subscribed)
	}
	// Served from the cache now that it is current: no GET at all.
	if again := burst("m1"); again != 0 {
		t.Fatalf("%v GETs for a current cached snapshot", again)
	}
	unsubscribed := burst("other")
	t.Logf("1000 concurrent Snapshot calls of an unsubscribed match (coalescing only): %v Redis GETs", unsubscribed)
	if unsubscribed > 100 {
		t.Fatalf("%v GETs for 1000 concurrent requests: no coalescing", unsubscribed)
	}

	// A quiet match subscribed now: the subscription's Lost(bus) leaves the seq unknown
	// and no delta comes to tell it, but a GET answered with nothing delivered or lost
	// meanwhile is current, so the cache serves from then on.
	b.Subscribe("other")
	waitSubscribed(t, srv, "other", false)
	eventually(t, 5*time.Second, "the cache of a quiet match revalidated", func() bool {
		_, _ = b.Snapshot(ctx, "other")
		before := value(b.m.gets)
		_, _ = b.Snapshot(ctx, "other")
		return value(b.m.gets) == before
	})
	if again := burst("other"); again != 0 {
		t.Fatalf("%v GETs for a revalidated quiet match", again)
	}

	// A new delta makes the cache stale: the next request fetches it.
	if err := b.PublishDelta(ctx, delta("m1", 4, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "seq 4", func() bool { return len(sink.delivered()) == 4 })
	s, err := b.Snapshot(ctx, "m1")
	if err != nil || s.Seq != 4 {
		t.Fatalf("snapshot after a delta: %v %v", s.Seq, err)
	}
}

func TestMatchesAndViewers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _ := newTestBus(t, nodeOptions("a", srv.Addr()))
	ob := nodeOptions("b", srv.Addr())
	ob.ViewerTTL = 300 * time.Millisecond
	b, _ := newTestBus(t, ob)
	ctx := t.Context()
	for _, d := range []bus.Delta{delta("m2", 1, "Eng v Pak"), delta("m1", 1, "Ind v Aus"), delta("m1", 2, "")} {
		if err := a.PublishDelta(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	a.SetViewers(map[string]int{"m1": 10, "m2": 1})
	b.SetViewers(map[string]int{"m1": 5})
	want := []bus.MatchInfo{{Match: "m1", Title: "Ind v Aus", Epoch: testEpoch, Seq: 2, Viewers: 15}, {Match: "m2", Title: "Eng v Pak", Epoch: testEpoch, Seq: 1, Viewers: 1}}
	var got []bus.MatchInfo
	eventually(t, 5*time.Second, "matches with both nodes' viewers", func() bool {
		var err error
		got, err = a.Matches(ctx)
		return err == nil && slices.Equal(got, want)
	})
	// Node b stops reporting: its count expires.
	want[0].Viewers = 10
	defer func() {
		if t.Failed() {
			t.Logf("last Matches: %+v", got)
		}
	}()
	eventually(t, 5*time.Second, "node b's viewers expired", func() bool {
		got, _ = a.Matches(ctx)
		return slices.Equal(got, want)
	})
	// A match left out of the next report is removed for that node.
	a.SetViewers(map[string]int{"m1": 3})
	want[0].Viewers, want[1].Viewers = 3, 0
	eventually(t, 5*time.Second, "node a's new counts", func() bool {
		got, _ = a.Matches(ctx)
		return slices.Equal(got, want)
	})
}

// TestViewersEvent: after each SetViewers the bus reads the total of every match it has
// local viewers of and hands its sink a low-priority `viewers` event when the total
// changed since it last announced it.
func TestViewersEvent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, sink := newTestBus(t, nodeOptions("a", srv.Addr()))
	b, _ := newTestBus(t, nodeOptions("b", srv.Addr()))
	// a follows m1, so that a message published on its channel can show that every
	// event queued before it has reached the sink.
	a.Subscribe("m1")
	waitSubscribed(t, srv, "m1", false)

	viewers := func() []int64 {
		var out []int64
		for _, d := range sink.delivered() {
			var ev struct {
				Type, Match, Prio, Kind string
				TS                      int64
				Viewers                 int64
			}
			if err := json.Unmarshal([]byte(d), &ev); err != nil || ev.Kind != "viewers" {
				continue
			}
			if ev.Type != "event" || ev.Match != "m1" || ev.Prio != "low" || ev.TS == 0 {
				t.Errorf("bad viewers event %s", d)
			}
			out = append(out, ev.Viewers)
		}
		return out
	}
	// report has node n report m1's count and waits until the report is written (and,
	// for a, announced).
	report := func(n *Bus, count int) {
		t.Helper()
		before := n.views.reports.Load()
		n.SetViewers(map[string]int{"m1": count})
		eventually(t, 5*time.Second, "the report written", func() bool { return n.views.reports.Load() > before })
	}
	// delivered waits until whatever a announced so far has reached the sink: a marker
	// published behind it arrives through the same queue.
	barrier := 0
	delivered := func() {
		t.Helper()
		barrier++
		ev := eventFrame("m1", fmt.Sprint("barrier ", barrier))
		if _, err := srv.Cli("PUBLISH", "crease:{m1}", ev); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the barrier event", func() bool { return slices.Contains(sink.delivered(), ev) })
	}
	report(b, 5)
	report(a, 2)
	delivered()
	if got := viewers(); !slices.Equal(got, []int64{7}) {
		t.Fatalf("first announcement %v, want [7]", got)
	}
	report(a, 2) // unchanged: nothing
	report(b, 6)
	report(a, 2)
	delivered()
	if got := viewers(); !slices.Equal(got, []int64{7, 8}) {
		t.Fatalf("after the change: %v, want [7 8]", got)
	}
	// Unchanged, it is repeated once every viewerRepeat reports, and only then.
	for range viewerRepeat - 1 {
		report(a, 2)
	}
	delivered()
	if got := viewers(); !slices.Equal(got, []int64{7, 8}) {
		t.Fatalf("repeated too early: %v", got)
	}
	report(a, 2)
	delivered()
	if got := viewers(); !slices.Equal(got, []int64{7, 8, 8}) {
		t.Fatalf("on the %dth report of an unchanged total: %v, want [7 8 8]", viewerRepeat, got)
	}
}
