// Package bus is the boundary between publishers (ingest) and gateways: the Publisher
// write side (atomic snapshot + seq + publish), the Snapshots read side for the REST
// snapshot, and the Subscriber side driven by a gateway's local interest.
//
// Messages are the verbatim JSON text of `delta` and `event` frames (PROTOCOL.md); Parse
// validates one once per gateway. Every bus hands what it receives to one Tracker, the
// gateway's only record of each match's stream position (per epoch): it calls the Sink
// with each message once, parsed, in the order of delivery rule 1, announces gaps and new
// epochs with Lost, and drops duplicates and deltas of older epochs. A bus whose
// snapshots can lag its stream (Redis: a lost write, the old primary of a split brain)
// has the Tracker judge each snapshot it serves of a subscribed match (Tracker.Served):
// one behind what was delivered is refused, and the first delta after a loss is
// announced with Lost when it is beyond a snapshot served since. The embedded
// implementation (NewEmbedded) is the default bus of `crease demo` and `crease serve`
// without Redis; the Redis implementation lives in bus/redis.
//
// Concurrency: Publisher and Snapshots methods are safe for concurrent use and may block
// on I/O. Subscriber.Subscribe and Unsubscribe are called from event loops, under the
// gateway's interest lock, and return at once. Sink methods run on the bus's delivering
// goroutine (or under its lock), one at a time, and never block.
package bus
