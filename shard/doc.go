// Package shard owns the per-event-loop half of the gateway: one Shard per gnet event
// loop, holding that loop's connections, its match → Subscribers index, every
// connection's outbound queue (two lanes over shared pre-encoded frames, bounded by an
// OutboundBudget) and the loop's inbox of bus messages.
//
// One file, one idea: shard.go the loop's state; options.go its configuration and the
// hooks back into the gateway; lifecycle.go a connection from Open to Closed, the
// periodic Tick, the drain; subscribe.go the index; fanout.go the bus side (Post,
// PostLost, the inbox drain) and the flushes; queue.go the lanes and the budget's
// policy; sweep.go, clock.go, oprate.go and token.go the once-a-second sweep on the
// connection clock and what it enforces; recover.go and history.go the subscribes with
// `since` waiting for their replay (Hooks.History, PostHistory); catchup.go the catch-up
// deltas of connections with ?catchup=1 (SetCatchUp), composed with crease/mergepatch. The JSON of the frames it makes (subscribed,
// resync, reconnect) and the close reasons are crease/wire's.
//
// Concurrency: everything in a Shard runs on its event loop's goroutine, except Post,
// PostLost, PostHistory and the atomic lag/queue figures, which any goroutine may call. Nothing here
// may block: the loop also serves every read and write of its connections. Writes never
// happen while a subscriber list is being walked: a delivery first queues the frame on
// each subscriber and then flushes the touched connections, so a write that fails (and
// closes its connection inside gnet's Write) never disturbs an iteration.
package shard
