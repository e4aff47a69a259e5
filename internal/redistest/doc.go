// Package redistest runs real redis-server processes for tests: a single server
// (Start) with Kill and Restart for failure tests; a primary, its replica and three
// sentinels monitoring them as SentinelMaster (StartSentinel); and a three-master Redis
// Cluster (StartCluster), with one replica per master (StartClusterWithReplicas). Every
// process is private to the test, bound to 127.0.0.1 on a free port, persists nothing,
// and is stopped by t.Cleanup (on Linux also by the kernel if the test process dies
// first: a panic, -timeout or SIGKILL leaks no redis-server).
//
// Failovers are driven and observed, never waited for by sleeping: Kill (SIGKILL),
// Freeze and Thaw (SIGSTOP, SIGCONT: a hung host), PauseReplication (the replica shut
// out of its primary, so that it lags by exactly the writes made meanwhile),
// Sentinel.Failover (SENTINEL FAILOVER), Server.FailoverForce (CLUSTER FAILOVER FORCE);
// Sentinel.WaitNewMaster and Cluster.WaitNewPrimaryForKey poll the sentinels' and the
// nodes' own view until the new primary is in place, Sentinel.WaitReady and
// Cluster.WaitHealthy until the setup can fail over again. Each wait fails the test
// after FailoverTimeout with the last state it saw.
//
// redis-server and redis-cli are found on PATH. When they are missing the test is
// skipped, unless the environment variable CI is set: then it fails, so that CI never
// passes by skipping the Redis tests.
//
// Ports are chosen by binding :0 and releasing it, so two test binaries running in
// parallel can race for a port; a server that fails to start is retried on a new port.
package redistest
