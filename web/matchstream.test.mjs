import { test } from "node:test";
import assert from "node:assert/strict";
import { MatchStream } from "./crease-client.js";
import { FakeClock, fakeFetch, flush, silentLog } from "./fakes.mjs";

const d = (seq, patch) => ({ type: "delta", match: "m1", epoch: "e1", seq, prio: "high", ts: seq, patch });

function setup() {
  const clock = new FakeClock();
  const fetch = fakeFetch();
  const states = [];
  const s = new MatchStream("m1", {
    fetchSnapshot: (m) => fetch(`/v1/matches/${m}`),
    onState: (state, info) => states.push({ state, ...info }),
    timers: clock,
    random: () => 0.5,
    log: silentLog,
  });
  // fakeFetch answers are {ok,status,json}; MatchStream wants the parsed body.
  s.fetchSnapshot = (m) => fetch(`/v1/matches/${m}`).then((r) => r.json());
  return { clock, fetch, states, s };
}

async function live(s, fetch, seq, state) {
  s.subscribing();
  s.subscribed();
  fetch.last().snapshot(seq, state);
  await flush();
  assert.equal(s.phase, "live");
}

test("deltas are ignored before subscribing and buffered until the snapshot", async () => {
  const { fetch, states, s } = setup();
  s.delta(d(1, { a: 1 }));
  s.subscribing();
  assert.equal(fetch.calls.length, 0, "no snapshot before `subscribed`");
  s.delta(d(3, { runs: 3 }));
  s.delta(d(4, { runs: 4 }));
  s.subscribed();
  assert.equal(s.phase, "fetching");
  assert.equal(fetch.calls.length, 1);
  s.delta(d(5, { runs: 5, x: null }));
  s.delta(d(6, { over: "0.6" }));
  assert.equal(states.length, 0, "nothing is shown while the snapshot is in flight");
  fetch.last().snapshot(4, { runs: 4, x: 1, over: "0.4" });
  await flush();
  assert.equal(s.seq, 6);
  assert.deepStrictEqual(s.state, { runs: 5, over: "0.6" });
  assert.equal(states.length, 1, "snapshot and buffered deltas are shown once");
  assert.equal(states[0].cause, "snapshot");
  assert.equal(states[0].seq, 6);
  assert.equal(s.buffer.length, 0);
});

test("live deltas apply in order; stale ones are skipped", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, 10, { runs: 10 });
  s.delta(d(11, { runs: 11 }));
  s.delta(d(11, { runs: 999 }));
  s.delta(d(7, { runs: 999 }));
  s.delta(d(12, { runs: 12 }));
  assert.equal(s.seq, 12);
  assert.deepStrictEqual(s.state, { runs: 12 });
  assert.deepStrictEqual(states.map((x) => [x.cause, x.seq]), [["snapshot", 10], ["delta", 11], ["delta", 12]]);
  assert.equal(fetch.calls.length, 1, "stale deltas do not refetch");
});

test("a gap refetches the snapshot and resumes with the delta that revealed it", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, 10, { runs: 10 });
  s.delta(d(13, { runs: 13 }));
  assert.equal(s.phase, "fetching");
  assert.equal(fetch.calls.length, 2);
  assert.equal(s.seq, 10, "nothing past the gap is applied");
  s.delta(d(14, { runs: 14 }));
  fetch.last().snapshot(12, { runs: 12 });
  await flush();
  assert.equal(s.seq, 14);
  assert.deepStrictEqual(s.state, { runs: 14 });
  assert.deepStrictEqual(states.at(-1), { state: { runs: 14 }, seq: 14, epoch: "e1", cause: "resync" });
});

test("a gap inside the buffer after the snapshot fetches again, after the backoff", async () => {
  const { clock, fetch, s } = setup();
  s.subscribing();
  s.subscribed();
  s.delta(d(5, { runs: 5 }));
  s.delta(d(7, { runs: 7 }));
  fetch.last().snapshot(4, { runs: 4 });
  await flush();
  assert.equal(s.seq, 5);
  assert.equal(s.phase, "fetching");
  // Asked again at once, a store that stays behind would be hammered (thousands of
  // requests a second).
  assert.equal(fetch.calls.length, 1, "not at once");
  await clock.advance(499); // random 0.5 of a 1000 ms window
  assert.equal(fetch.calls.length, 1);
  await clock.advance(1);
  assert.equal(fetch.calls.length, 2);
  fetch.last().snapshot(6, { runs: 6 });
  await flush();
  assert.equal(s.seq, 7);
  assert.equal(s.phase, "live");
});

test("a resync frame refetches and buffers meanwhile", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, 3, { runs: 3 });
  s.resync("slow");
  assert.equal(s.phase, "fetching");
  assert.equal(fetch.calls.length, 2);
  s.delta(d(9, { runs: 9 }));
  assert.equal(s.seq, 3, "deltas wait for the snapshot");
  fetch.last().snapshot(8, { runs: 8 });
  await flush();
  assert.equal(s.seq, 9);
  assert.equal(states.at(-1).cause, "resync");
});

test("resyncs while a snapshot is out do not cancel it: one request, asked again once it lands", async () => {
  const { clock, fetch, s } = setup();
  await live(s, fetch, 1, { runs: 1 });
  s.resync("gap");
  for (let i = 0; i < 600; i++) s.resync("gap");
  assert.equal(fetch.calls.length, 2, "one request out, not one per resync");
  fetch.last().snapshot(20, { runs: 20 });
  await flush();
  assert.deepStrictEqual([s.seq, s.state], [20, { runs: 20 }], "the answer lands and is shown");
  assert.equal(s.phase, "fetching", "it was asked for before the last resync: not proven current");
  assert.equal(fetch.calls.length, 2);
  await clock.advance(500); // the backoff: random 0.5 of 1000 ms
  assert.equal(fetch.calls.length, 3);
  fetch.last().snapshot(21, { runs: 21 });
  await flush();
  assert.equal(s.phase, "live");
});

test("a resync while a snapshot is out: a later delta the answer covers proves it current", async () => {
  const { fetch, s } = setup();
  await live(s, fetch, 1, { runs: 1 });
  s.resync("gap");
  s.resync("slow");
  s.delta(d(9, { runs: 9 })); // after the second resync
  s.delta(d(10, { runs: 10 }));
  fetch.last().snapshot(8, { runs: 8 });
  await flush();
  assert.deepStrictEqual([s.seq, s.phase, fetch.calls.length], [10, "live", 2]);
});

test("a failed snapshot is retried with backoff", async () => {
  const { clock, fetch, s } = setup();
  s.subscribing();
  s.subscribed();
  fetch.last().fail();
  await flush();
  assert.equal(fetch.calls.length, 1);
  await clock.advance(499); // random 0.5 of a 1000 ms window
  assert.equal(fetch.calls.length, 1);
  await clock.advance(1);
  assert.equal(fetch.calls.length, 2);
  fetch.last().snapshot(2, { runs: 2 });
  await flush();
  assert.equal(s.phase, "live");
});

test("stop drops the buffer and ignores a late snapshot, keeping the state for display", async () => {
  const { fetch, s } = setup();
  await live(s, fetch, 2, { runs: 2 });
  s.resync("bus");
  s.delta(d(3, { runs: 3 }));
  s.stop();
  fetch.last().snapshot(3, { runs: 3 });
  await flush();
  assert.equal(s.phase, "idle");
  assert.deepStrictEqual(s.state, { runs: 2 });
  s.delta(d(4, { runs: 4 }));
  assert.equal(s.buffer.length, 0);
});
