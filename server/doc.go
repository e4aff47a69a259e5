// Package server is the crease gateway: a gnet reactor with one Shard per event loop, its
// own accept loop with admission control in front of the loops, the WebSocket protocol
// on each connection (handshake, client ops, heartbeats), the dispatcher that hands bus
// messages to the shards, the HTTP listener (snapshots, health, metrics, the page) and
// the graceful drain.
//
// Goroutines and what must not block:
//   - each gnet event loop runs OnOpen, OnTraffic, OnClose and every task Executed on it
//     (deliveries, ticks, probes, drains); none of it may block;
//   - the accept loop accepts (accept4 on the listener, or on a socket inherited through
//     Options.WSListener), applies admission control and hands each socket to a loop,
//     which opens it in gnet (enroll_linux.go); refusals are answered by a small
//     bounded pool of goroutines;
//   - the bus's goroutine calls the dispatcher, the gateway's bus.Sink, through the
//     bus's Tracker: each message once, parsed and in order, counted once; the
//     dispatcher encodes its frame once and posts it to the shards without blocking;
//   - a loop whose shard gets its first subscriber of a match, or loses its last, calls
//     the bus's Subscribe or Unsubscribe itself, under the dispatcher's lock (so the
//     calls of one match stay in order across loops); the bus only records them;
//   - the history service (recovery.go) answers the loops' replay requests for
//     subscribes with `since` under its own lock, from the deltas it keeps of a match or
//     by a read on one of its Reads worker goroutines (bus.History, bounded by a
//     timeout and --replay-rate); the dispatcher hands it each delta before the loops
//     get it, and each loss first;
//   - the ticker goroutine posts ticks and lag probes to every loop;
//   - net/http serves the HTTP listener (snapshots, the match list, the page and the
//     publish API when given), behind CORS and, under a JWT secret, the token check;
//     its gzip cache is shared by those goroutines under a mutex;
//   - Start's goroutine opens one probe connection per loop (reachEveryLoop) so that
//     every loop's shard and metrics exist before the first client.
//
// Timers a client is promised (heartbeat, idle close, handshake deadline, op bucket,
// token expiry) run on the shards' connection clock, shard.Options.Now, which tests
// replace with servertest.Clock.
package server
