// Package client is the Go client of a crease gateway: it keeps subscriptions to matches
// alive over one WebSocket connection and rebuilds each match's state with the client
// algorithm of PROTOCOL.md (subscribe, buffer deltas, fetch the snapshot after
// `subscribed`, apply the deltas above it as RFC 7396 merge patches, refetch on `resync`
// or a gap, reconnect with jittered backoff, obey `reconnect{after_ms}`).
//
// What it owns:
//   - Client: the connection, the reconnect loop and the subscriptions (New, Run,
//     Subscribe, OnEvent, OnError).
//   - Stream: the per-match state machine, pure (no I/O, no goroutines), reusable by
//     anything that rebuilds match state.
//   - Checker: the "nothing lost" checker of fault tests (delivery rules 1 and 2, and
//     Verify against the final snapshot); it plugs into a Client as its Observer.
//
// Goroutines: Run's goroutine owns the connection's state and every Stream and runs all
// callbacks (subscribers' onState, OnEvent, OnError, Options.OnStatus, the Observer).
// Per connection it starts one reader goroutine (the only reader of the socket, which
// also answers pings) and one goroutine per outstanding snapshot fetch (at most one per
// match); both hand results to Run's goroutine over channels and are waited for before
// the connection is left behind. Subscribe and the unsubscribe functions only update a
// map under a mutex and wake Run's goroutine, so they are safe from any goroutine,
// callbacks included.
//
// What must not block: callbacks run on Run's goroutine, so a blocking callback stalls
// the connection (the reader then stops reading, the gateway sees a slow consumer and
// answers with `resync` or a cut). Copy what you need and return.
package client
