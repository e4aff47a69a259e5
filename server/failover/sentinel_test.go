package failover_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"crease/internal/redistest"
	"crease/server/servertest"
)

// TestSentinelPrimaryKilled: a primary, its replica and three sentinels; two gateways
// and the publisher find the master through the sentinels. Mid-match the primary is
// killed with SIGKILL. The sentinels promote the replica; the publisher's retried
// publishes and the gateways' subscriptions move to it by themselves (rueidis follows
// +switch-master); while no master answers /readyz is 503. Every client ends with the
// publisher's state, in the same epoch, with nothing lost.
func TestSentinelPrimaryKilled(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	r := startReplay(t, sentinelStore(s), failoverReplay())
	epoch, atKill := r.pub.position()

	old, replica := s.Master(), s.Replica()
	old.Kill()
	fault := time.Now()
	servertest.Eventually(t, 10*time.Second, func() error {
		if code := r.gws[0].readyz(); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d with the master dead, want 503", code)
		}
		return nil
	})
	nm := s.WaitNewMaster(t, old)
	back := time.Now()
	if nm != replica {
		t.Fatalf("new master %s, want the replica %s", nm.Addr(), replica.Addr())
	}
	r.survived(t, "sentinel, primary killed", fault, back, epoch, atKill, false)
	for _, g := range r.gws {
		if code := g.readyz(); code != http.StatusOK {
			t.Errorf("%s: /readyz %d after the failover, want 200", g.name, code)
		}
		if n := counter(t, g.reg, "crease_bus_master_changes_total"); n < 1 {
			t.Errorf("%s: crease_bus_master_changes_total %v, want ≥ 1", g.name, n)
		}
	}
}

// TestSentinelLaggingReplica: the replica is shut out of replication (its user disabled
// on the primary) and misses the last deltas; then the primary is killed and the
// sentinels promote the lagging replica. The store is now behind the publisher: the
// publisher's next delta re-seeds it at the publisher's own next seq, same epoch
// (crease_store_publishes_total{result="reseeded_behind"}); gateways answer snapshots
// 503 until then rather than serve the older state; every client converges.
func TestSentinelLaggingReplica(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	r := startReplay(t, sentinelStore(s), failoverReplay())

	primary, replica := s.Master(), s.Replica()
	replica.PauseReplication(t)
	epoch, paused := r.pub.position()
	// The replica holds at most what the primary had when it was cut off.
	r.pub.waitPublished(t, paused+8, 10*time.Second)
	waitReached(t, r.ws, epoch, paused+8, 10*time.Second) // the clients saw deltas the replica lacks
	lag := storedSeq(t, replica, r.m.ID(), false)         // frozen while paused
	primary.Kill()
	fault := time.Now()
	_, atKill := r.pub.position()
	if lag >= atKill {
		t.Fatalf("the replica holds seq %d, not behind the publisher's %d: it did not lag", lag, atKill)
	}
	t.Logf("the replica to be promoted holds seq %d, the publisher was at %d", lag, atKill)
	nm := s.WaitNewMaster(t, primary)
	back := time.Now()
	if nm != replica {
		t.Fatalf("new master %s, want the replica %s", nm.Addr(), replica.Addr())
	}
	r.survived(t, "sentinel, lagging replica promoted", fault, back, epoch, atKill, true)
}

// storedSeq reads the seq of crease:{ID}:seq (EPOCH:SEQ) on n, a replica (of a
// cluster: READONLY first) or a primary; 0 when there is none.
func storedSeq(t testing.TB, n *redistest.Server, match string, cluster bool) uint64 {
	t.Helper()
	get := "GET crease:{" + match + "}:seq"
	lines := []string{get}
	if cluster {
		lines = []string{"READONLY", get}
	}
	out, err := n.Session(lines...)
	if err != nil {
		t.Fatalf("%s on %s: %v %s", get, n.Addr(), err, out)
	}
	out = out[strings.LastIndexByte(out, '\n')+1:]
	seq, err := strconv.ParseUint(out[strings.LastIndexByte(out, ':')+1:], 10, 64)
	if err != nil {
		t.Fatalf("%s on %s: %q", get, n.Addr(), out)
	}
	return seq
}
