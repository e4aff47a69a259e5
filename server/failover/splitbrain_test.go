package failover_test

import "testing"

// TestClusterForcedFailoverPrimaryAlive: CLUSTER FAILOVER FORCE on a lagging replica
// while the old primary still runs. Until it hears of the new configuration, the old
// primary takes the publisher's writes (acknowledged, then lost when it resyncs from the
// new primary), serves snapshots of them, and its subscribers miss the shard messages
// published on the new primary before the full sync's snapshot point. The gateway must
// still never deliver a delta after a hole without `resync`.
func TestClusterForcedFailoverPrimaryAlive(t *testing.T) {
	t.Parallel()
	forcedFailover(t, nil)
}
