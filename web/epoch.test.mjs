// MatchStream and contract version 2: epochs, catch-up deltas (from), recovery (since).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MatchStream } from "./crease-client.js";
import { FakeClock, fakeFetch, flush, silentLog } from "./fakes.mjs";

const d = (epoch, seq, patch, from) => ({ type: "delta", match: "m1", epoch, seq, prio: "high", ts: seq, patch, ...(from === undefined ? {} : { from }) });

function setup() {
  const clock = new FakeClock();
  const fetch = fakeFetch();
  const states = [];
  const s = new MatchStream("m1", {
    fetchSnapshot: (m) => fetch(`/v1/matches/${m}`).then((r) => r.json()),
    onState: (state, info) => states.push({ state, ...info }),
    timers: clock,
    random: () => 0.5,
    log: silentLog,
  });
  return { clock, fetch, states, s };
}

async function answer(fetch, epoch, seq, state) {
  fetch.last().respond(200, { match: "m1", epoch, seq, state });
  await flush();
}

async function live(s, fetch, epoch, seq, state) {
  s.subscribing();
  s.subscribed();
  await answer(fetch, epoch, seq, state);
  assert.equal(s.phase, "live");
}

test("a delta of another epoch is a new stream; the new snapshot sets the position though its seq is lower", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, "e1", 40, { n: 40, old: true });
  s.delta(d("e1", 41, { n: 41 }));
  s.delta(d("e2", 2, { n: 2 }));
  assert.equal(s.phase, "fetching");
  assert.equal(fetch.calls.length, 2);
  s.delta(d("e2", 3, { n: 3 }));
  await answer(fetch, "e2", 2, { n: 2 });
  assert.deepStrictEqual([s.epoch, s.seq, s.state], ["e2", 3, { n: 3 }]);
  assert.deepStrictEqual(states.map((x) => [x.epoch, x.seq, x.cause]), [["e1", 40, "snapshot"], ["e1", 41, "delta"], ["e2", 3, "resync"]]);
  s.delta(d("e2", 3, { n: 0 }));
  assert.equal(s.seq, 3, "stale within the new epoch");
});

test("resync{epoch} refetches; the old epoch's buffered deltas are dropped", async () => {
  const { fetch, s } = setup();
  await live(s, fetch, "e1", 5, { n: 5 });
  s.resync("epoch");
  s.delta(d("e2", 1, { m: 1 }));
  s.delta(d("e2", 2, { m: 2 }));
  assert.equal(fetch.calls.length, 2, "the deltas expected after a resync do not refetch");
  await answer(fetch, "e2", 1, { m: 1 });
  assert.deepStrictEqual([s.epoch, s.seq, s.state], ["e2", 2, { m: 2 }]);
});

test("a new epoch while a snapshot is out asks again once it lands: the answer may be of the old epoch", async () => {
  const { clock, fetch, s } = setup();
  await live(s, fetch, "e1", 5, { n: 5 });
  s.delta(d("e1", 7, { n: 7 })); // a gap: fetch
  s.delta(d("e2", 1, { m: 1 }));
  assert.equal(fetch.calls.length, 2, "the request out is neither cancelled nor doubled");
  fetch.last().respond(200, { match: "m1", epoch: "e1", seq: 7, state: { n: 7 } });
  await flush();
  assert.equal(s.phase, "fetching", "an answer of the old epoch does not bring the stream current");
  assert.equal(fetch.calls.length, 2, "asked again after the backoff, not at once");
  await clock.advance(500); // random 0.5 of the 1000 ms window
  assert.equal(fetch.calls.length, 3);
  await answer(fetch, "e2", 1, { m: 1 });
  assert.deepStrictEqual([s.epoch, s.seq, s.phase], ["e2", 1, "live"]);
});

test("a version 1 snapshot (no epoch) works, and learns the epoch from the deltas", async () => {
  const { fetch, s } = setup();
  s.subscribing();
  s.subscribed();
  fetch.last().respond(200, { match: "m1", seq: 3, state: { n: 3 } });
  await flush();
  assert.deepStrictEqual([s.epoch, s.seq], ["", 3]);
  s.delta({ type: "delta", match: "m1", seq: 4, prio: "high", ts: 1, patch: { n: 4 } });
  assert.equal(s.seq, 4);
  s.delta(d("e", 5, { n: 5 }));
  assert.deepStrictEqual([s.epoch, s.seq], ["e", 5]);
  assert.equal(s.position().epoch, "e");
});

test("a same-epoch snapshot older than the state held is no step back", async () => {
  const { fetch, s } = setup();
  await live(s, fetch, "e", 10, { n: 10 });
  s.resync("slow");
  s.delta(d("e", 11, { n: 11 }));
  await answer(fetch, "e", 8, { n: 8 });
  assert.deepStrictEqual([s.seq, s.state], [11, { n: 11 }]);
});

test("catch-up deltas apply when the held seq is within [from, seq-1]", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, "e", 10, { a: 10, b: 1 });
  s.delta(d("e", 13, { a: 13, b: null }, 8));
  assert.deepStrictEqual([s.seq, s.state], [13, { a: 13 }]);
  assert.equal(states.at(-1).from, 8);
  s.delta(d("e", 15, { a: 15 }, 13)); // from = the held seq
  assert.equal(s.seq, 15);
  s.delta(d("e", 15, { a: 0 }, 1));
  assert.equal(s.state.a, 15, "stale, whatever its from");
  s.delta(d("e", 18, { a: 18 }, 16)); // from above the held seq: a gap
  assert.equal(s.phase, "fetching");
  assert.equal(s.seq, 15);
  // In the buffer: the delta reaching furthest among those that apply is taken.
  s.delta(d("e", 17, { p: 17 }));
  s.delta(d("e", 20, { c: 20 }, 12));
  await answer(fetch, "e", 16, { s: 16 });
  assert.deepStrictEqual([s.seq, s.state], [20, { s: 16, c: 20 }]);
  // from 0 is a base like any other: the empty state of a match not started.
  const t = setup();
  await live(t.s, t.fetch, "e", 0, {});
  t.s.delta(d("e", 5, { x: 5 }, 0));
  assert.deepStrictEqual([t.s.seq, t.s.state], [5, { x: 5 }]);
});

test("recovered:true goes on from the held state without a snapshot; recovered:false fetches", async () => {
  const { fetch, states, s } = setup();
  await live(s, fetch, "e", 4, { n: 4 });
  assert.deepStrictEqual(s.position(), { epoch: "e", seq: 4 });
  s.stop(); // the socket went
  s.subscribing(true);
  s.subscribed(true);
  assert.equal(s.phase, "live");
  assert.equal(fetch.calls.length, 1);
  s.delta(d("e", 5, { n: 5 }));
  assert.deepStrictEqual(states.at(-1).seq, 5);
  s.stop();
  s.subscribing(true);
  s.subscribed(false);
  assert.equal(s.phase, "fetching");
  // recovered without having sent since means nothing.
  const t = setup();
  t.s.subscribing(true); // no state: no since
  t.s.subscribed(true);
  assert.equal(t.s.phase, "fetching");
});

test("a recovered stream whose first delta does not continue it resyncs", async () => {
  const { fetch, s } = setup();
  await live(s, fetch, "e", 4, { n: 4 });
  s.stop();
  s.subscribing(true);
  s.subscribed(true);
  s.delta(d("e", 7, { n: 7 }));
  assert.equal(s.phase, "fetching");
  await answer(fetch, "e", 6, { n: 6 });
  assert.equal(s.seq, 7);
});
