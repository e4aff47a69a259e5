// Package failover holds crease's Redis failover tests (its tests are package
// failover_test; this package has no other code). Each test runs real redis-server
// processes (internal/redistest: a primary, a replica and three sentinels, or a
// three-master Redis Cluster with one replica each), in-process gateways on the Redis
// bus (servertest.Run), a publisher replaying a real match through its own Redis bus
// (ingest.Replay), and Go clients (client.New with a client.Checker as Observer), and
// then breaks the store:
//
//   - Sentinel: the primary killed with SIGKILL mid-match, the replica promoted;
//   - Sentinel: the replica shut out of replication first, so that it misses the last
//     writes, then promoted (the store is behind the publisher: it re-seeds);
//   - Cluster: the primary of the match's slot killed; a lagging replica forced to take
//     over with CLUSTER FAILOVER FORCE, with its primary killed first or still running
//     (a split brain: both take writes, the old one serves snapshots, for a moment);
//   - Redis flushed and the publisher restarted without memory: a new epoch;
//   - the publisher stopped and restarted with the store intact: it resumes;
//   - a failover every few seconds under many clients (the failover loop; long under
//     CREASE_SOAK=1, `make soak`).
//
// Every test ends with the same checks: the store (read through every gateway) holds
// exactly the publisher's last state, every client's Checker saw no violation of
// delivery rules 1 and 2 and rebuilt that state (no client is stuck), and the gateways
// and the publisher followed the new master without a restart. The time from the fault
// to every client holding a state published after it is logged (FAULTS.md lists the
// figures); only correctness is asserted.
//
// Nothing waits by sleeping: each step waits for its condition (the sentinels naming a
// new master, the cluster's slot owner, a seq reached by every client).
package failover
