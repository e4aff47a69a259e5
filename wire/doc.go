// Package wire is PROTOCOL.md's vocabulary of the gateway's side in Go, in one place:
// the JSON text of every message the gateway itself writes to a client (hello,
// subscribed, error, resync, reconnect) and of the viewers event it publishes, the
// `error` codes (ErrorCode) and the reasons a connection ends (CloseReason), each with
// its close code and its crease_disconnects_total label. Deltas and other events are
// the publishers' text, forwarded verbatim; their grammar is bus.Parse's.
//
// It imports only bus (whose ResyncReason names a resync), so that anything may use it:
// shard, server and bus/redis build their messages from it, and a change of the contract
// is a change here, in PROTOCOL.md and in its tests together.
//
// Everything here is a pure function or a constant: any goroutine may call it.
// Encoders return a new slice each call; the shard wraps it in a WebSocket frame once
// and shares that frame read-only.
package wire
