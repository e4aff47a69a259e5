// Package bus is the boundary between publishers (ingest) and gateways: the Publisher
// write side (atomic snapshot + seq + publish), the Snapshots read side for the REST
// snapshot, and the Subscriber side driven by a gateway's local interest.
//
// Messages are the verbatim JSON text of `delta` and `event` frames (PROTOCOL.md); Parse
// validates one once per gateway. The embedded implementation (NewEmbedded) is the
// default bus of `crease demo` and `crease serve` without Redis; the Redis implementation
// lives in bus/redis.
//
// Concurrency: Publisher and Snapshots methods are safe for concurrent use and may block
// on I/O. Subscriber.Subscribe and Unsubscribe are called from event loops and never
// block. Sink methods run on the bus's goroutine and never block.
package bus
