// Package shard owns the per-event-loop half of the gateway: one Shard per gnet event
// loop, holding that loop's connections, its match → Subscribers index, every
// connection's outbound queue (two lanes over shared pre-encoded frames, bounded by an
// OutboundBudget) and the loop's inbox of bus messages.
//
// Concurrency: everything in a Shard runs on its event loop's goroutine, except Post,
// PostLost and the atomic lag/queue figures, which any goroutine may call. Nothing here
// may block: the loop also serves every read and write of its connections. Writes never
// happen while a subscriber list is being walked: a delivery first queues the frame on
// each subscriber and then flushes the touched connections, so a write that fails (and
// closes its connection inside gnet's Write) never disturbs an iteration.
package shard
