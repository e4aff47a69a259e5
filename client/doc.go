// Package client is the Go client of a crease gateway: it keeps subscriptions to matches
// alive over one WebSocket connection and rebuilds each match's state with the client
// algorithm of PROTOCOL.md, contract version 2: subscribe, buffer deltas, fetch the
// snapshot after `subscribed`, apply the deltas of its epoch above it as RFC 7396 merge
// patches (catch-up deltas with `from` included), refetch on `resync`, a gap or a delta
// of another epoch; on reconnect subscribe with `since` = the position held and skip the
// snapshot when the gateway answers `recovered:true`; reconnect with jittered backoff
// whose attempt count starts over only after a connection delivered a delta or stayed
// open 30 s; obey `reconnect{after_ms}`; authenticate with a token provider (the
// `bearer.<jwt>` subprotocol, `Authorization: Bearer` for snapshots, `auth` before the
// token expires).
//
// What it owns:
//   - Client: the connection, the reconnect loop and the subscriptions (New, Run,
//     Subscribe, OnEvent, OnError, Refusal, FetchSnapshot). Files: client.go (the API and the reconnect loop),
//     conn.go (one connection: frames, subscriptions, refusals), snapshot.go (snapshot
//     fetches), token.go (tokens and their refresh), options.go, types.go, clock.go.
//   - Stream: the per-match state machine, pure (no I/O, no goroutines), reusable by
//     anything that rebuilds match state (stream.go).
//   - Checker: the "nothing lost" checker of fault tests (delivery rules 1 and 2, and
//     Verify against the final snapshot); it plugs into a Client as its Observer.
//
// Goroutines: Run's goroutine owns the connection's state and every Stream and runs all
// callbacks (subscribers' onState, OnEvent, OnError, Options.OnStatus, the Observer).
// Per connection it starts one reader goroutine (the only reader of the socket, which
// also answers pings), one goroutine per outstanding snapshot fetch (at most one per
// match), one per due token refresh and one per rate-limited subscribe waiting to be
// sent again; all hand results to Run's goroutine over channels and are waited for
// before the connection is left behind. Options.Token is called on Run's goroutine
// before a dial, on a refresh goroutine, and by FetchSnapshot. Subscribe and the
// unsubscribe functions only update a map under a mutex and wake Run's goroutine, so
// they are safe from any goroutine, callbacks included.
//
// What must not block: callbacks run on Run's goroutine, so a blocking callback stalls
// the connection (the reader then stops reading, the gateway sees a slow consumer and
// answers with `resync` or a cut). Copy what you need and return.
package client
