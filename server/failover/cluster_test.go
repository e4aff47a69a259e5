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
	r := startReplay(t, clusterStore(c), failoverReplay())
	epoch, atKill := r.pub.position()

	old := c.PrimaryForKey(channelKey(r.m.ID()))
	replica := c.ReplicaOf(old)
	old.Kill()
	fault := time.Now()
	np := c.WaitNewPrimaryForKey(t, channelKey(r.m.ID()), old)
	back := time.Now()
	if np != replica {
		t.Fatalf("new primary %s, want the replica %s", np.Addr(), replica.Addr())
	}
	r.survived(t, "cluster, primary killed", fault, back, epoch, atKill, false)
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
	r := startReplay(t, clusterStore(c), failoverReplay())

	old := c.PrimaryForKey(channelKey(r.m.ID()))
	replica := c.ReplicaOf(old)
	replica.PauseReplication(t)
	epoch, paused := r.pub.position()
	r.pub.waitPublished(t, paused+8, 10*time.Second)
	waitReached(t, r.ws, epoch, paused+8, 10*time.Second)
	lag := storedSeq(t, replica, r.m.ID(), true) // frozen while paused
	fault := time.Now()
	if down != nil {
		down(old)
	}
	replica.FailoverForce(t)
	_, atFailover := r.pub.position()
	if lag >= atFailover {
		t.Fatalf("the replica holds seq %d, not behind the publisher's %d: it did not lag", lag, atFailover)
	}
	t.Logf("the forced replica holds seq %d, the publisher was at %d", lag, atFailover)
	np := c.WaitNewPrimaryForKey(t, channelKey(r.m.ID()), old)
	back := time.Now()
	if np != replica {
		t.Fatalf("new primary %s, want the forced replica %s", np.Addr(), replica.Addr())
	}
	replica.ResumeReplication(t)
	r.survived(t, "cluster, forced failover to a lagging replica", fault, back, epoch, atFailover, true)
}
