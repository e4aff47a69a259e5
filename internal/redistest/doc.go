// Package redistest runs real redis-server processes for tests: a single server
// (Start) with Kill and Restart for failure tests, and a three-master Redis Cluster
// (StartCluster). Every process is private to the test, bound to 127.0.0.1 on a free
// port, persists nothing, and is stopped by t.Cleanup.
//
// redis-server and redis-cli are found on PATH. When they are missing the test is
// skipped, unless the environment variable CI is set: then it fails, so that CI never
// passes by skipping the Redis tests.
//
// Ports are chosen by binding :0 and releasing it, so two test binaries running in
// parallel can race for a port; a server that fails to start is retried on a new port.
package redistest
