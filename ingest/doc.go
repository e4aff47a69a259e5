// Package ingest turns ball-by-ball Cricsheet matches into the scorecard state and the
// `delta`/`event` frames of PROTOCOL.md, and replays them onto a bus.Publisher.
//
// It owns:
//   - the Cricsheet JSON reader (ReadMatch): the whole format, strictly. A file with a
//     syntax error, an unknown field or an impossible delivery is refused with an *Error
//     naming the file and the place ("x.json: innings 2, over 14, ball 3: ..."; over is
//     the file's 0-based over number, ball the 1-based position in that over). The whole
//     file is validated and scored once before ReadMatch returns, so a refused match
//     publishes nothing and an accepted one cannot fail half-way;
//   - the scorecard (State), whose JSON schema is shared with the web page;
//   - the Stepper, which numbers the steps of a match (scheduled, innings start, each
//     delivery, innings break, result) into deltas: the state, its RFC 7396 merge patch
//     from the previous state, seq and prio, plus a low-priority commentary event. After
//     the result it starts over with a delta whose patch resets the state, seq going on;
//   - Replay, which paces a Stepper onto a bus.Publisher, and the Simulator of endless
//     synthetic T20 matches that goes through the same reader and Stepper;
//   - the real matches embedded from ingest/matches (Cricsheet, ODC-By): Embedded.
//
// Concurrency: a Match is immutable and may be shared; a Stepper belongs to one
// goroutine. Replay runs on the caller's goroutine, one per match (several run
// concurrently on one Publisher); it blocks in Publisher calls and in its pacing timer,
// and returns when ctx is done. ReadMatch, Embedded and the Simulator's Match are pure
// CPU and never block.
package ingest
