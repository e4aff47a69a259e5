// Package backpressure is the real-socket suite of backpressure and priority shedding
// (its tests are package backpressure_test; it has no other code). Every test starts a
// real gateway with servertest.Run on an embedded bus and drives it with real loopback
// TCP clients: gorilla/websocket clients that keep up, and hand-made clients (raw TCP,
// a 4 KiB SO_RCVBUF set before connect, the WebSocket handshake written by hand) that
// stop reading, read slowly, or vanish.
//
// What the suite proves, against PROTOCOL.md:
//   - TestStalledClientsBoundedMemory: 500 stalled clients and 20 fast ones on one hot
//     match, publishing as fast as the fast clients read, on a gateway clock the test
//     moves (servertest.Clock), so that the stall and the cut happen when the test says,
//     however starved the machine. The gateway's heap (runtime/metrics, sampled during
//     the run; the gateway runs in the test process) stays under Budget x connections
//     plus a fixed overhead; every fast client gets every delta in order (rules 1, 2)
//     and converges to the snapshot; once the stall limit has passed, every stalled
//     client has a `resync` (reason slow) queued, and those that resume get it and
//     converge to the snapshot with the client algorithm; the others are cut once the
//     cut limit passes (crease_slow_consumer_cuts_total), the resumed ones stay; read
//     right after the cut, every cut client gets its frames up to a 4008 close frame.
//   - TestShedsEventsBeforeDeltas: a client reading 1 KB every 10 ms under interleaved
//     events and high deltas: events are dropped first (rule 3), every delta is received
//     in order or covered by a preceding `resync` (rules 1, 2), and it converges.
//   - TestFaultyClientsAreFreed: clients reading 1 byte per second are cut, clients that
//     vanish with a reset or go silent are freed (peer_gone, idle_timeout), and the fast
//     clients keep getting every delta meanwhile.
//
// The tests are sized for a shared 2-core machine: a few seconds of publishing each.
package backpressure
