// Package redisgw holds the integration tests of crease gateways on the Redis bus
// (bus/redis) against real redis-server processes (internal/redistest): several
// gateways (server/servertest) and one Redis or a three-master Cluster, Go clients
// (client) with the "nothing lost" Checker, and a real match replayed through the
// Redis publisher (ingest.Replay on a bus/redis Bus).
//
// What the tests prove:
//   - clients on two gateways converge to the final snapshot while a match replays,
//     including clients that subscribe mid-match (the subscribe-confirmation resync);
//   - a gateway holds a Redis subscription to a match exactly while it has local
//     subscribers (plus the debounce), standalone (PUBSUB CHANNELS) and in a Cluster
//     (SSUBSCRIBE, PUBSUB SHARDCHANNELS on the owning master);
//   - Redis killed with SIGKILL mid-match and restarted empty: the publisher waits,
//     re-seeds the match at its next seq, and every client ends with the exact final
//     state, never seeing an older seq;
//   - Redis flushed and the match started over by a publisher without memory (a new
//     epoch, at seqs below those delivered): version 1 clients, which ignore epochs,
//     converge through the `resync` reason epoch; the new epoch's snapshot is served at
//     once; a late delta of the old epoch never reaches a client;
//   - a gateway started with Redis unreachable is live (/healthz) but not ready
//     (/readyz 503) and recovers by itself;
//   - garbage on a match channel never reaches a client and is counted;
//   - 1,000 concurrent snapshot GETs through the gateway's HTTP cost a handful of Redis
//     GETs;
//   - /v1/matches sums the viewers of all gateways, and clients get `viewers` events.
//
// BenchmarkLatency measures publish-to-client latency through Redis (run it alone:
// go test -run XXX -bench Latency -benchtime 1x).
//
// The package has no non-test code; it skips without redis-server unless CI is set.
package redisgw
