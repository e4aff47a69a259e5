package failover_test

import (
	"testing"
	"time"

	"crease/internal/redistest"
)

// channelKey is the Redis key whose slot holds match's channel and keys.
func channelKey(match string) string { return "crease:{" + match + "}" }

// TestClusterPrimaryKilled: a three-master Redis Cluster with one replica each. The
// primary serving the match's slot is killed with SIGKILL mid-match; after the node
// timeout its replica is elected in its place. The publisher's retried script and the
// gateways' sharded subscriptions move to it (rueidis refreshes the slot map on the
// failed link and on MOVED), and every client ends with the publisher's state, same
// epoch.
func TestClusterPrimaryKilled(t *testing.T) {
	t.Parallel()
	c := redistest.StartClusterWithReplicas(t)
	st := clusterStore(c)
	gws := startGateways(t, 2, st)
	pub := newPublisher(t, st, "pub")
	m := realMatch(t)
	ws := startClients(t, pick(10, 200), gws, m.ID())
	stop := pub.replay(t, m, 25, nil)
	waitReached(t, ws, "", 10, 20*time.Second)
	epoch, atKill := pub.position()

	old := c.PrimaryForKey(channelKey(m.ID()))
	replica := c.ReplicaOf(old)
	old.Kill()
	fault := time.Now()
	np := c.WaitNewPrimaryForKey(t, channelKey(m.ID()), old)
	back := time.Now()
	if np != replica {
		t.Fatalf("new primary %s, want the replica %s", np.Addr(), replica.Addr())
	}
	converged(t, "cluster, primary killed", ws, pub, fault, back)
	pub.waitPublished(t, atKill+10, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("the replay stopped by itself across the failover: %v", err)
	}
	final := verifyEnd(t, gws, pub, ws)
	if final.Epoch != epoch {
		t.Fatalf("the epoch changed across the failover: %s -> %s", epoch, final.Epoch)
	}
	followed(t, gws, pub)
}

// TestClusterForcedFailoverToLaggingReplica: the replica of the match's primary is shut
// out of replication and misses the last deltas; then the primary dies (SIGKILL) and,
// as an operator does when the replica is too far behind for the cluster to elect it by
// itself, it is made primary at once with CLUSTER FAILOVER FORCE. The store is behind
// the publisher: one re-seed at the publisher's next seq, same epoch; gateways answer
// snapshots 503 until then; every client converges.
func TestClusterForcedFailoverToLaggingReplica(t *testing.T) {
	t.Parallel()
	forcedFailover(t, func(old *redistest.Server) { old.Kill() })
}

// forcedFailover runs the lagging-replica test; down takes the old primary down first
// (nil: it stays up).
func forcedFailover(t *testing.T, down func(old *redistest.Server)) {
	c := redistest.StartClusterWithReplicas(t)
	st := clusterStore(c)
	gws := startGateways(t, 2, st)
	pub := newPublisher(t, st, "pub")
	m := realMatch(t)
	ws := startClients(t, pick(10, 200), gws, m.ID())
	stop := pub.replay(t, m, 25, nil)
	waitReached(t, ws, "", 10, 20*time.Second)

	old := c.PrimaryForKey(channelKey(m.ID()))
	replica := c.ReplicaOf(old)
	replica.PauseReplication(t)
	epoch, paused := pub.position()
	pub.waitPublished(t, paused+8, 10*time.Second)
	waitReached(t, ws, epoch, paused+8, 10*time.Second)
	lag := storedSeq(t, replica, m.ID(), true) // frozen while paused
	fault := time.Now()
	if down != nil {
		down(old)
	}
	replica.FailoverForce(t)
	_, atFailover := pub.position()
	if lag >= atFailover {
		t.Fatalf("the replica holds seq %d, not behind the publisher's %d: it did not lag", lag, atFailover)
	}
	t.Logf("the forced replica holds seq %d, the publisher was at %d", lag, atFailover)
	np := c.WaitNewPrimaryForKey(t, channelKey(m.ID()), old)
	back := time.Now()
	if np != replica {
		t.Fatalf("new primary %s, want the forced replica %s", np.Addr(), replica.Addr())
	}
	replica.ResumeReplication(t)
	converged(t, "cluster, forced failover to a lagging replica", ws, pub, fault, back)
	pub.waitPublished(t, atFailover+10, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("the replay stopped by itself across the failover: %v", err)
	}
	final := verifyEnd(t, gws, pub, ws)
	if final.Epoch != epoch {
		t.Fatalf("the epoch changed across the re-seed: %s -> %s", epoch, final.Epoch)
	}
	if n := counter(t, pub.reg, "crease_store_publishes_total", "result", "reseeded_behind"); n != 1 {
		t.Errorf("crease_store_publishes_total{result=reseeded_behind} = %v, want 1 (one re-seed of the lagging store)", n)
	}
	followed(t, gws, pub)
}
