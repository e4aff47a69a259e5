// Package ingest turns ball-by-ball cricket into the scorecard state and the
// `delta`/`event` frames of PROTOCOL.md, and replays match files onto a bus.Publisher.
//
// It owns:
//   - the Cricsheet JSON reader (ReadMatch, cricsheet.go): the whole format, strictly. A
//     file with a syntax error, an unknown field, an impossible delivery or impossible
//     cricket (checks.go and the scorer: a format's overs exceeded, a ball past the
//     innings' overs, a wicket too many, a delivery after the target or after all out, a
//     dismissed batter batting again, an innings without overs) is refused with an
//     *Error naming the file and the place ("x.json: innings 2, over 14, ball 3: ...";
//     over is the file's 0-based over number, ball the 1-based position in that over).
//     The whole file is validated and scored once before ReadMatch returns, so a refused
//     match publishes nothing and an accepted one cannot fail half-way;
//   - the scorecard (State, state.go), whose JSON schema is schema/state.schema.json;
//   - the scorer (scorer.go: innings, balls, targets, the result), its commentary text
//     (commentary.go) and the match's fixed facts (match.go);
//   - Live (live.go), a match fed ball by ball, the publish API's model: it checks that
//     each ball is at the next position, recognises a duplicate, recomputes the state
//     from the corrected ball list for a correction, and keeps a journal (the info and
//     every ball with its seq) from which NewLiveFromJournal rebuilds it exactly. A
//     match posted ball by ball ends identical to the same match replayed from its file;
//   - the Stepper (delta.go), which numbers the steps of a match file (scheduled, innings
//     start, each delivery, innings break, result) into deltas of one epoch: the state,
//     its RFC 7396 merge patch from the previous state, seq and prio, a low-priority
//     commentary event, and a one-entry journal naming the step. After the result it
//     starts over with a delta whose patch resets the state, seq going on;
//   - Replay, which paces a Stepper onto a bus.Publisher and resumes a stored match at
//     the step its journal names (never from the first ball), and the Simulator of
//     endless synthetic T20 matches that goes through the same reader and Stepper;
//   - the real matches embedded from ingest/matches (Cricsheet, ODC-By): Embedded.
//
// Concurrency: a Match is immutable and may be shared; a Stepper and a Live belong to
// one goroutine at a time. Replay runs on the caller's goroutine, one per match (several
// run concurrently on one Publisher); it blocks in Publisher calls and in its pacing
// timer, and returns when ctx is done. ReadMatch, Embedded, Live and the Simulator's
// Match are pure CPU and never block.
package ingest
