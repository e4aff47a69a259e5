// Package redis is the Redis implementation of bus.Bus on rueidis: the publisher side
// for `crease ingest --redis` and the gateway side for `crease serve --redis ADDR[,ADDR]
// [--redis-cluster | --redis-sentinel MASTER]`. The key and channel layout is
// PROTOCOL.md's "Publishing (Redis)":
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
// New succeeds even when Redis is unreachable: Ready stays false and a goroutine retries.
// With Options.Sentinel, Addrs are the sentinels: rueidis asks them for the master,
// follows their +switch-master (and asks again every SentinelRefresh), and on a failover
// closes the old master's connection, so every Receive on it is made again on the new
// master (a resubscribe: Lost(match, bus)) and every publish is retried there.
// docs/redis-bus.md explains the choices below and the measurements behind them.
//
// # Goroutines
//
//   - manager: applies Subscribe and Unsubscribe, which only record the wanted state and
//     wake it, so event loops never wait for Redis. Unsubscribe is debounced
//     (UnsubscribeDebounce); a Subscribe within it cancels it.
//   - one per subscribed match: client.Receive for the match's channel. Its callbacks
//     only append to the bounded hand-off queue (HandoffMessages, HandoffBytes), with
//     every subscribe confirmation as a marker in order with the messages. A full queue
//     drops messages; the deliverer then reports Lost(match, bus).
//   - deliverer: the only caller of the bus.Tracker, and through it of the Sink. It
//     parses each message once, checks that it belongs to its channel's match, and hands
//     it to the Tracker, which keeps PROTOCOL.md's rule 1 per epoch. Every subscribe
//     confirmation is Lost(match, bus): on the first one the gateway had already said
//     `subscribed`, on a later one rueidis resubscribed after a disconnect (or the bus
//     did after a slot migration).
//   - health: PINGs every node each HealthInterval; Ready is true while all answer. With
//     Sentinel it also logs and counts a change of the master's address.
//   - viewers: writes this node's counts (SetViewers, which never blocks) with ViewerTTL,
//     reads each match's total over all nodes and, when it changed (or every sixth
//     report), queues {"type":"event","match":ID,"prio":"low","ts":US,"kind":"viewers",
//     "viewers":N} for the local subscribers through the hand-off queue.
//
// Publisher, Snapshots, History and Resumer methods run on the caller's goroutine and
// block on Redis.
//
// # Publishing
//
// PublishDelta is one Lua script (publish.lua) applying the store rules of
// bus.PublishResult and writing seq, snapshot, info, history and journal, then
// PUBLISHing (SPUBLISH) the frame, atomically; the live-match index is a separate ZADD.
// A publish that fails on the link, or on LOADING, CLUSTERDOWN, TRYAGAIN, READONLY, is
// retried with backoff until the caller's context ends; the store rules make a retry
// that was applied already a duplicate, never a second publish.
//
// # Snapshots
//
// Snapshot serves GET /v1/matches/{id}: concurrent requests share one GET, and a tracked
// (subscribed) match's snapshot is cached while current. It returns ErrStoreBehind,
// served as 503, while the store holds less than this gateway delivered of the same
// epoch (or an epoch the stream has left, or nothing): Redis lost data and the publisher
// has not re-seeded it yet. The bus.Tracker judges every answer when it comes, so a GET
// out while the first delta after a loss arrived is judged against that delta too; an
// answer served after a loss and before that delta is recorded in the Tracker, which
// sends Lost(gap) before the delta if it is beyond the answer + 1 (an old primary that
// still serves the slot it lost, while the gateway hears the new one).
//
// # Metrics (Options.Registerer)
//
// crease_bus_reconnects_total, crease_bus_resubscribes_total, crease_bus_subscriptions,
// crease_bus_master_changes_total (Sentinel),
// crease_store_publishes_total{result}, crease_snapshot_requests_total{result="hit|
// coalesced|miss|behind"}, crease_redis_gets_total. What the gateway receives (messages,
// drops, losses, latency) is counted once, by its Sink.
package redis
