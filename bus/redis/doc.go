// Package redis is the Redis implementation of bus.Bus on rueidis: the publisher side
// for `crease ingest --redis` and the gateway side for `crease serve --redis ADDR[,ADDR]
// [--redis-cluster]`. The key and channel layout is PROTOCOL.md's "Publishing (Redis)":
//
//	crease:{ID}          channel of match ID (SUBSCRIBE/PUBLISH, or SSUBSCRIBE/SPUBLISH in a cluster)
//	crease:{ID}:snap     snapshot {"match","epoch","seq","state"}
//	crease:{ID}:seq      stored position EPOCH:SEQ
//	crease:{ID}:info     hash: title, epoch, seq (for /v1/matches), hist_bytes
//	crease:{ID}:hist     list: the recent delta frames of the stored epoch (History)
//	crease:{ID}:balls    list: the publisher's journal (Stored), optional
//	crease:{ID}:viewers  hash: NodeID -> "COUNT:EXPIRES_UNIX_MS", key expiry refreshed by writers
//	crease:matches       zset of match ids, score = last publish (Unix ms); its own slot
//
// Usage:
//
//	b, err := redis.New(redis.Options{Addrs: addrs, Cluster: cluster, Registerer: reg, Logger: log})
//	err = b.Start(ctx, sink) // gateway only; ingest just calls PublishDelta/PublishEvent
//	defer b.Close()
//
// # What it owns
//
// One rueidis client (made by New; if Redis is unreachable New still succeeds and a
// goroutine retries, Ready stays false until then), the set of Redis subscriptions, a
// bounded hand-off queue, the per-match seq tracking, a snapshot cache, and the writer
// of this node's viewer counts.
//
// # Goroutines
//
//   - manager: applies Subscribe/Unsubscribe. Those two only record the wanted state
//     under a mutex and wake it, so event loops never wait for Redis. Unsubscribe is
//     debounced (UnsubscribeDebounce); a Subscribe within it cancels it.
//   - one per subscribed match: runs client.Receive for the match's channel. Its message
//     callback only appends to the hand-off queue (the rueidis connection reader feeds it
//     through a 16-slot channel: a slow callback would stall the connection). A full queue
//     (HandoffMessages or HandoffBytes) drops the message and, after the batch in hand,
//     reports Lost(match, bus). Every subscribe confirmation queues a Lost(match, bus) in
//     order with the messages: the first one because the gateway sent `subscribed` as
//     soon as its client asked, before Redis had the subscription, so deltas published
//     in between never reached us (PROTOCOL.md rule 2: the `resync` covers them; a
//     client that subscribes to a match the gateway already holds gets no resync, it
//     needs none); a later one because rueidis resubscribed after a disconnect, or we
//     did after a slot migration's sunsubscribe.
//   - deliverer: the only caller of the Sink. It copies each message once to []byte,
//     validates it with bus.Parse (and that it belongs to its channel's match; anything
//     else counts in crease_bus_invalid_total and is dropped), drops a delta whose seq is
//     not above the last delivered one (PROTOCOL.md rule 1 holds even across a resync, so
//     a publisher that restarts a match at seq 1 is only heard again past the old seq),
//     and reports Lost(match, gap) before a delta that skips seqs. The first delta after
//     a (re)subscribe is not gap-checked: the subscribe already reported the loss. The
//     Sink must not block: everything queued behind it waits.
//   - health: PINGs every node each HealthInterval; Ready is true while all answer.
//   - viewers: writes the counts of SetViewers (which never blocks) with ViewerTTL, then
//     reads the total over all nodes of each match with local viewers and, when it
//     changed since last announced here (or every 6th report, 30 s by default, for
//     newcomers and for clients whose event was dropped), queues the event
//     {"type":"event","match":ID,"prio":"low","ts":US,"kind":"viewers","viewers":N} for
//     the local subscribers. Each gateway announces to its own clients what it reads,
//     so no node is elected and nothing more is published; gateways agree within one
//     viewer interval (server.Options.ViewerInterval, 5 s).
//
// Publisher and Snapshots methods run on the caller's goroutine and block on Redis.
//
// # Publishing
//
// PublishDelta is one Lua script (publish.lua, EVALSHA) with the store rules of
// bus.PublishResult: stored + 1 of the same epoch is applied; an empty store takes seq 1
// (a new epoch) or re-seeds at the publisher's seq (it lost its data); a store behind
// the publisher (a failover to a lagging replica) is re-seeded at the publisher's seq; a
// store ahead, or holding another epoch, refuses it (bus.ErrSeqConflict). The script
// then sets seq, snapshot, info, history and journal and PUBLISHes (SPUBLISH) the
// frame: a snapshot at N and the delta N+1 can never disagree, and two publishers of one
// match cannot interleave. All its keys share the {ID} hash tag. The live-match index
// is a separate ZADD (another slot in a cluster; it need not be atomic). Each rule
// applied is counted in crease_store_publishes_total{result}.
//
// A publish that fails on the link (or on LOADING, CLUSTERDOWN, TRYAGAIN, READONLY ...)
// is retried with backoff until the caller's context ends, so `crease ingest` pauses
// through a Redis outage instead of stopping. The seq check makes retries safe: a retry
// whose earlier attempt was applied finds its own position and snapshot stored and
// succeeds without publishing again (duplicate). A journal sent as its new entries only
// to a store that lost the rest (NEEDJOURNAL) is sent again whole.
//
// History (bus.History) and Stored (bus.Resumer) are read by one script each, atomically
// with the stored position.
//
// # When Redis loses its data (restart without persistence, keys deleted, failover)
//
// The publisher is the source of truth of its matches; Redis only caches the last state.
// A publisher that still holds its state keeps its epoch and seq and re-seeds the store
// at its next delta; a publisher that lost its memory reads the store first (Stored) and
// resumes it, or, when the store is empty too, starts a new epoch at seq 1.
//   - gateways: rueidis reconnects and resubscribes; the confirmation reports
//     Lost(match, bus), so every subscriber gets `resync`.
//   - clients refetch the snapshot. Until the publisher's next delta re-seeds the store,
//     Redis has no snapshot (or an older one) of a match the gateway has delivered
//     deltas of: Snapshot then returns ErrStoreBehind, served as 503 (the clients retry),
//     rather than a 404 saying the match never started.
//
// # Snapshots
//
// Snapshot serves GET /v1/matches/{id}. Concurrent requests of one match share one GET.
// For a subscribed match the result is cached and served while its seq equals the last
// seq the deliverer saw; a newer delta or any loss invalidates it. Measured: 1,000
// concurrent Snapshot calls of one match cost 1 GET (subscribed or not), and a
// repeated burst with a current cache 0.
//
// # Why one Receive per match (measured)
//
// rueidis offers two ways to hold many channels: client.Receive per channel, or one
// Dedicate()d connection with SetPubSubHooks and SUBSCRIBE/UNSUBSCRIBE by hand.
// TestMeasureSubscriptionStrategies (CREASE_MEASURE=1), 5,000 channels, standalone
// Redis 7.0, 2 shared cores:
//
//	Receive per channel:  subscribed in ~0.1 s, 1 goroutine and ~6.5 KB (heap + stack)
//	                      per channel, 130k-340k msg/s through the callbacks
//	dedicated + hooks:    subscribed in ~16 ms, ~0.45 KB per channel, 480k-620k msg/s
//
// The dedicated connection is leaner, but in a cluster a Dedicate()d client binds to
// the slot of its first command (a second slot panics), so it would need one connection
// per slot in use (thousands), plus our own slot map, MOVED handling and re-dedication
// after every disconnect. Receive routes each SSUBSCRIBE by its channel's slot over the
// node's shared connection, resubscribes by itself after a disconnect, and ends (err
// nil) on a slot migration's sunsubscribe, which we turn into a resubscribe on the new
// owner. Even the slower figure is two orders of magnitude above a cricket feed
// (thousands of matches, a delta every few seconds each), and 10,000 matches cost
// ~65 MB. So both modes use Receive per match, one code path. Receive does not
// unsubscribe when its context ends, so the unsubscribe is sent from rueidis's
// receive-return hook on the same connection, and a match's next subscription waits
// for the previous one's unsubscribe.
//
// # Metrics (Options.Registerer; nil exports none)
//
// crease_bus_messages_total{kind}, crease_bus_invalid_total,
// crease_bus_dropped_total{reason="overflow|duplicate"}, crease_bus_reconnects_total,
// crease_bus_resubscribes_total, crease_bus_subscriptions, crease_store_publishes_total{result},
// crease_snapshot_requests_total{result="hit|coalesced|miss|behind"},
// crease_redis_gets_total.
package redis
