// Package faults holds crease's fault-injection suite (its tests are package
// faults_test; this package has no other code). Each test runs a real gateway
// (servertest.Run), a real match replaying onto the bus (ingest.Replay), and Go clients
// (client.New with a client.Checker as Observer), with a bad network emulated in user
// space by toxiproxy used as a library (this kernel has no netem): between the clients
// and the gateway (2G links, flapping links, airplane mode) or between the gateway and a
// real redis-server (a slow Redis, a Redis link cut mid-message).
//
// Every fault test ends with the same three checks:
//   - nothing lost: every client's Checker has no violation of delivery rules 1 and 2,
//     and its rebuilt state equals the final REST snapshot (Checker.Verify);
//   - bounded memory: the live heap of the test process (gateway, proxies and clients
//     together, so an upper bound of the gateway's), sampled with runtime/metrics all
//     along, stays under a stated bound;
//   - still serving: a fresh client connecting straight to the gateway afterwards
//     converges to the final snapshot.
//
// The tests are short (seconds, a handful of clients) so that the package runs in about
// a minute with -race on two shared cores. CREASE_SOAK=1 (make soak) runs the long
// versions: more clients and a longer replay under the same faults.
//
// FAULTS.md at the repository root maps every fault of the matrix to the test that
// injects it, here or elsewhere.
package faults
