package redis

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	cl, b, sink := newClusterBus(t)
	ctx := t.Context()

	// One match on each master.
	owner := map[string]*redistest.Server{}
	var matches []string
	used := map[*redistest.Server]bool{}
	for i := 0; len(matches) < redistest.ClusterSize && i < 100; i++ {
		m := fmt.Sprint("m", i)
		n := cl.NodeForKey("crease:{" + m + "}")
		if n == nil {
			t.Fatalf("no owner for %s", m)
		}
		if !used[n] {
			used[n] = true
			owner[m] = n
			matches = append(matches, m)
		}
	}
	for _, m := range matches {
		b.Subscribe(m)
	}
	for _, m := range matches {
		waitSubscribed(t, owner[m], m, true)
		for _, n := range cl.Nodes {
			if n != owner[m] && slices.Contains(channels(t, n, true), "crease:{"+m+"}") {
				t.Fatalf("%s subscribed on %s, which does not own it", m, n.Addr())
			}
		}
		if got := channels(t, owner[m], false); len(got) != 0 {
			t.Fatalf("plain SUBSCRIBE in cluster mode: %v", got)
		}
	}
	var want []string
	for _, m := range matches {
		for seq := uint64(1); seq <= 3; seq++ {
			d := delta(m, seq, "title "+m)
			if err := b.PublishDelta(ctx, d); err != nil {
				t.Fatalf("PublishDelta %s/%d: %v", m, seq, err)
			}
			want = append(want, string(d.Frame))
		}
		ev := eventFrame(m, "wicket")
		if err := b.PublishEvent(ctx, m, []byte(ev)); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev)
	}
	eventually(t, 5*time.Second, "cluster deliveries", func() bool { return len(sink.delivered()) == len(want) })
	if got := sink.delivered(); !slices.Equal(got, want) {
		t.Fatalf("delivered\n%q\nwant\n%q", got, want)
	}
	for _, m := range matches {
		if s, err := b.Snapshot(ctx, m); err != nil || s.Seq != 3 {
			t.Fatalf("snapshot %s: %d %v", m, s.Seq, err)
		}
	}
	infos, err := b.Matches(ctx)
	if err != nil || len(infos) != len(matches) {
		t.Fatalf("Matches: %+v %v", infos, err)
	}

	// Unsubscribe reaches the owning node.
	b.Unsubscribe(matches[0])
	eventually(t, 5*time.Second, "SUNSUBSCRIBE", func() bool {
		return !slices.Contains(channels(t, owner[matches[0]], true), "crease:{"+matches[0]+"}")
	})
}

// TestClusterSlotMigration moves the slot of a subscribed match to another master:
// Redis drops the shard subscription with an sunsubscribe; the bus must subscribe again
// on the new owner and report the loss.
func TestClusterSlotMigration(t *testing.T) {
	t.Parallel()
	cl, b, sink := newClusterBus(t)

	const m = "migrating"
	ch := "crease:{" + m + "}"
	src := cl.NodeForKey(ch)
	out, err := src.Cli("CLUSTER", "KEYSLOT", ch)
	if err != nil {
		t.Fatal(err)
	}
	slot, _ := strconv.Atoi(out)
	var dst *redistest.Server
	for _, n := range cl.Nodes {
		if n != src {
			dst = n
			break
		}
	}
	b.Subscribe(m)
	waitSubscribed(t, src, m, true)

	dstID, err := dst.Cli("CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	// The slot holds no keys, so it can be reassigned directly: new owner first.
	for _, n := range append([]*redistest.Server{dst, src}, cl.Nodes...) {
		if out, err := n.Cli("CLUSTER", "SETSLOT", strconv.Itoa(slot), "NODE", dstID); err != nil || out != "OK" {
			t.Fatalf("SETSLOT on %s: %q %v", n.Addr(), out, err)
		}
	}
	eventually(t, 10*time.Second, "resubscribed on the new owner", func() bool {
		return slices.Contains(channels(t, dst, true), ch)
	})
	// One at the first subscription, one at the resubscription on the new owner.
	eventually(t, 5*time.Second, "Lost(bus)", func() bool { return sink.losses(m, bus.ReasonBus) == 2 })
	if slices.Contains(channels(t, src, true), ch) {
		t.Fatal("still subscribed on the old owner")
	}
	if err := b.PublishDelta(t.Context(), delta(m, 1, "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "delivery after the migration", func() bool { return len(sink.delivered()) == 1 })
}

// newClusterBus starts a Redis Cluster and a started bus in cluster mode on it.
func newClusterBus(t *testing.T) (*redistest.Cluster, *Bus, *fakeSink) {
	t.Helper()
	cl := redistest.StartCluster(t)
	o := testOptions(cl.Addrs()...)
	o.Cluster = true
	b, sink := newTestBus(t, o)
	return cl, b, sink
}
