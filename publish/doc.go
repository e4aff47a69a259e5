// Package publish is the HTTP publish API of PROTOCOL.md "Publishing (HTTP)": a score
// feed in any language writes matches over HTTP, and the API turns each write into one
// atomic store step (bus.Publisher: snapshot + seq + history + journal + PUBLISH).
//
//	PUT   /v1/matches/{id}             a cricket match from a Cricsheet info object (201 / 200)
//	POST  /v1/matches/{id}/deliveries  one ball, scored by ingest.Live
//	PUT   /v1/matches/{id}/state       any JSON object as the whole state (the merge patch is published)
//	PATCH /v1/matches/{id}/state       an RFC 7396 merge patch, published as given
//	POST  /v1/matches/{id}/events      an ephemeral event
//
// It owns the in-memory position (epoch, seq), state and journal of each match it writes,
// loaded from the store (bus.Resumer) the first time a match is touched, so a restarted
// API resumes every match exactly where the store has it and never rewinds a score. A
// write that the store refuses or whose outcome is unknown (Redis unreachable) drops the
// match's memory: the next request reloads it from the store.
//
// Concurrency: API.ServeHTTP runs on net/http's goroutines. Writes of one match are
// serialised by the match's mutex (they must be: each is stored + 1); writes of
// different matches run in parallel. The idempotency cache has its own mutex.
package publish
