// A hostile or broken gateway must never drive the client into a loop or a freeze: the
// cases an audit with a fake gateway found (reconnect after_ms, snapshots that leave a
// gap or are of another epoch, resync storms, bad patches, bad snapshot bodies, silent
// servers, absurd heartbeats).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, MatchStream } from "./crease-client.js";
import { FakeClock, fakeFetch, fakeJWT, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

const MAX_TIMER = 2 ** 31 - 1;

function setup() {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const statuses = [];
  const c = connect({ url: "ws://gw:8080/ws", WebSocket: WS, fetch, timers: clock, random: () => 0.5, document: null, window: null, navigator: null, log: silentLog });
  c.on("status", (s, info) => statuses.push(s === "reconnecting" ? `${s} ${info.inMs}` : s));
  return { clock, WS, fetch, c, statuses };
}

const delta = (seq, patch, epoch = "e1") => ({ type: "delta", match: "m1", epoch, seq, prio: "high", ts: seq, patch });

/** Open the socket, hello, subscribed m1, snapshot (epoch e1, seq) answered. */
async function live(WS, fetch, seq = 1, state = { runs: 1 }) {
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
  ws.serverSend({ type: "subscribed", match: "m1" });
  fetch.last().snapshot(seq, state);
  await flush();
  return ws;
}

/**
 * Run the fake clock for ms in steps of step; each step first lets onSocket act on every
 * socket not seen yet and answer(call) every pending snapshot request. Stops early past
 * limit sockets or requests (a client in a tight loop would never let the test end).
 */
async function run(clock, WS, fetch, { ms, step = 10, onSocket = () => {}, answer = null, limit = 500 }) {
  let seen = 0;
  let maxPending = 0;
  for (let t = 0; t < ms && WS.instances.length < limit && fetch.calls.length < limit; t += step) {
    while (seen < WS.instances.length) onSocket(WS.instances[seen++]);
    maxPending = Math.max(maxPending, fetch.pending().length);
    if (answer) for (const call of fetch.pending()) answer(call);
    await clock.advance(step);
  }
  return { maxPending };
}

/** A gateway that answers every upgrade with hello, then reconnect{after_ms}. */
function helloThenReconnect(after_ms) {
  return (ws) => {
    ws.serverOpen();
    ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 20 });
    ws.serverSend({ type: "reconnect", after_ms });
  };
}

/** A client subscribed to m1 on an open connection (hello, subscribed), its snapshot request out. */
function subscribedClient() {
  const env = setup();
  env.c.subscribe("m1", () => {});
  const ws = env.WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
  ws.serverSend({ type: "subscribed", match: "m1" });
  return { ...env, ws };
}

/** The waits of the "reconnecting N" statuses, in ms. */
function reconnectWaits(statuses) {
  return statuses.filter((s) => s.startsWith("reconnecting")).map((s) => Number(s.split(" ")[1]));
}

for (const after_ms of [0, 1e10, -5, "soon", undefined]) {
  test(`reconnect{after_ms: ${after_ms}} right after hello backs off like any other end`, async () => {
    const { clock, WS, fetch, c, statuses } = setup();
    c.subscribe("m1", () => {});
    await run(clock, WS, fetch, { ms: 60_000, onSocket: helloThenReconnect(after_ms) });
    assert.ok(clock.maxDelay <= MAX_TIMER, `a timer of ${clock.maxDelay} ms would fire at once`);
    const waits = reconnectWaits(statuses);
    if (after_ms === 1e10) {
      // Clamped to 5 minutes, not an overflowing timer that fires after 1 ms.
      assert.deepStrictEqual(waits, [300_000]);
      assert.equal(WS.instances.length, 1);
    } else {
      // The attempt counts up (hello alone proves nothing): 0.5 of the windows 5 s, 5 s,
      // 5 s, 5 s, 8 s, 16 s, 30 s.
      assert.deepStrictEqual(waits.slice(0, 7), [2500, 2500, 2500, 2500, 4000, 8000, 15000]);
      assert.ok(WS.instances.length <= 10, `${WS.instances.length} connections in 60 s`);
    }
  });
}

test("a drain of a connection that delivered a delta waits exactly its after_ms", async () => {
  const { clock, WS, fetch, c, statuses } = setup();
  c.subscribe("m1", () => {});
  const ws = await live(WS, fetch, 1, { runs: 1 });
  ws.serverSend(delta(2, { runs: 2 }));
  ws.serverSend({ type: "reconnect", after_ms: 300 });
  await clock.advance(0);
  assert.deepStrictEqual(reconnectWaits(statuses), [300]);
  await clock.advance(299);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1);
  assert.equal(WS.instances.length, 2);
});

test("reconnect{after_ms} is waited at least, on top of nothing once the attempts grew past it", async () => {
  const { clock, WS, fetch, c, statuses } = setup();
  c.subscribe("m1", () => {});
  await run(clock, WS, fetch, { ms: 40_000, onSocket: helloThenReconnect(3000) });
  const waits = reconnectWaits(statuses);
  assert.deepStrictEqual(waits.slice(0, 6), [3000, 3000, 3000, 3000, 4000, 8000], "max(after_ms, the backoff's draw)");
});

test("a snapshot that stays behind the first delta after recovered:true is asked again with backoff", async () => {
  const { clock, WS, fetch, c } = setup();
  c.subscribe("m1", () => {});
  let ws = await live(WS, fetch, 5, { runs: 5 });
  ws.serverClose(1006);
  await clock.advance(2500);
  ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
  assert.deepStrictEqual(ws.ops("subscribe").at(-1).since, { epoch: "e1", seq: 5 });
  ws.serverSend({ type: "subscribed", match: "m1", recovered: true });
  const before = fetch.calls.length;
  ws.serverSend(delta(9, { runs: 9 })); // a gap; the store never gets past 5
  await run(clock, WS, fetch, { ms: 3000, step: 1, answer: (call) => call.snapshot(5, { runs: 5 }) });
  const asked = fetch.calls.length - before;
  // 0, then 0.5 of 1 s and 2 s windows: 3 requests in 3 s (4,307 without the backoff).
  assert.ok(asked >= 2 && asked <= 4, `${asked} snapshot requests in 3 s`);
  assert.equal(c.status, "resyncing");
  // The store catches up: within the backoff's cap (30 s) the next request finds it.
  await run(clock, WS, fetch, { ms: 31_000, step: 100, answer: (call) => call.snapshot(9, { runs: 9 }) });
  assert.deepStrictEqual([c.status, c.state("m1")], ["live", { runs: 9 }]);
});

test("a resync storm: one snapshot request at a time, and answers land during the storm", async () => {
  const { clock, WS, fetch, c } = setup();
  const causes = [];
  c.subscribe("m1", (s, info) => causes.push([clock.now, info.cause]));
  const ws = await live(WS, fetch, 1);
  const before = fetch.calls.length;
  const start = clock.now;
  let sent = 0;
  let maxPending = 0;
  // 600 resync frames in 2 s (3 every 10 ms); the store answers 50 ms after each request.
  for (let t = 0; t < 2000; t++) {
    if (t % 10 < 3) {
      ws.serverSend({ type: "resync", match: "m1", reason: "slow" });
      sent++;
    }
    for (const call of fetch.pending()) {
      call.t ??= clock.now;
      if (clock.now - call.t >= 50) call.snapshot(10 + t, { runs: t });
    }
    maxPending = Math.max(maxPending, fetch.pending().length);
    await clock.advance(1);
  }
  assert.equal(sent, 600);
  assert.equal(maxPending, 1, "never more than one request out");
  const asked = fetch.calls.length - before;
  assert.ok(asked <= 12, `${asked} snapshot requests for 600 resyncs`);
  assert.ok(causes.some(([t, cause]) => cause === "resync" && t < start + 2000), "a snapshot landed during the storm");
});

test("deltas flipping between epochs: one snapshot request at a time, with backoff", async () => {
  const { clock, WS, fetch, c } = setup();
  c.subscribe("m1", () => {});
  const ws = await live(WS, fetch, 1);
  const before = fetch.calls.length;
  let maxPending = 0;
  for (let i = 0; i < 201; i++) {
    ws.serverSend(delta(2 + i, { runs: i }, i % 2 ? "e2" : "e1"));
    for (const call of fetch.pending()) {
      call.t ??= clock.now;
      if (clock.now - call.t >= 30) call.respond(200, { match: "m1", epoch: "e1", seq: 1, state: { runs: 0 } });
    }
    maxPending = Math.max(maxPending, fetch.pending().length);
    await clock.advance(10);
  }
  assert.ok(maxPending <= 1, `${maxPending} requests out at once`);
  const asked = fetch.calls.length - before;
  assert.ok(asked <= 8, `${asked} snapshot requests for 201 deltas in 2 s`);
});

for (const [name, patch] of [
  ["an array", [1, 2]],
  ["missing", undefined],
  ["a string", "x"],
  ["null", null],
]) {
  test(`a delta whose patch is ${name} is a gap: never shown, resynced`, async () => {
    const { WS, fetch, c } = setup();
    const shown = [];
    c.subscribe("m1", (s) => shown.push(s));
    const ws = await live(WS, fetch, 1, { runs: 1 });
    const before = fetch.calls.length;
    ws.serverSend(delta(2, patch));
    assert.deepStrictEqual(c.state("m1"), { runs: 1 }, "the state is not replaced by the patch");
    assert.equal(c.status, "resyncing");
    assert.equal(fetch.calls.length, before + 1, "a snapshot is asked for");
    ws.serverSend(delta(3, { runs: 3 })); // buffered: it needs seq 2
    fetch.last().snapshot(2, { runs: 2 });
    await flush();
    assert.deepStrictEqual(shown, [{ runs: 1 }, { runs: 3 }]);
    assert.equal(c.status, "live");
  });
}

for (const [name, body] of [
  ["an error body", { error: "boom" }],
  ["another match's state", { match: "zzz", epoch: "e1", seq: 4, state: { other: true } }],
  ["a state that is an array", { match: "m1", epoch: "e1", seq: 4, state: [1, 2] }],
  ["a null state past seq 0", { match: "m1", epoch: "e1", seq: 4, state: null }],
  ["a negative seq", { match: "m1", epoch: "e1", seq: -1, state: {} }],
  ["a fractional seq", { match: "m1", epoch: "e1", seq: 1.5, state: {} }],
  ["a string seq", { match: "m1", epoch: "e1", seq: "4", state: {} }],
  ["an epoch that is not a string", { match: "m1", epoch: 7, seq: 4, state: {} }],
  ["an array", [1, 2]],
  ["null", null],
]) {
  test(`a 200 snapshot with ${name} is no snapshot: not shown, asked again with backoff`, async () => {
    const { clock, WS, fetch, c } = setup();
    const shown = [];
    c.subscribe("m1", (s) => shown.push(s));
    const ws = WS.last();
    ws.serverOpen();
    ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
    ws.serverSend({ type: "subscribed", match: "m1" });
    fetch.last().respond(200, body);
    await flush();
    assert.deepStrictEqual(shown, []);
    assert.equal(c.state("m1"), undefined);
    assert.equal(c.status, "connecting");
    await clock.advance(499); // 0.5 of the 1 s window
    assert.equal(fetch.calls.length, 1);
    await clock.advance(1);
    assert.equal(fetch.calls.length, 2);
    fetch.last().snapshot(4, { runs: 4 });
    await flush();
    assert.deepStrictEqual([c.status, shown], ["live", [{ runs: 4 }]]);
  });
}

test("a 404 snapshot still means not started: state null, live", async () => {
  const { WS, fetch, c } = setup();
  const shown = [];
  c.subscribe("m1", (s, info) => shown.push([s, info.seq]));
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
  ws.serverSend({ type: "subscribed", match: "m1" });
  fetch.last().respond(404, { error: "unknown_match" });
  await flush();
  assert.deepStrictEqual([c.status, shown], ["live", [[null, 0]]]);
  ws.serverSend(delta(1, { runs: 1 }));
  assert.deepStrictEqual(c.state("m1"), { runs: 1 });
});

test("a snapshot request that never answers is aborted after 10 s and asked again with backoff", async () => {
  const { clock, fetch, c } = subscribedClient();
  const first = fetch.last();
  assert.ok(first.init.signal, "the request can be aborted");
  await clock.advance(9999);
  assert.equal(first.aborted, false);
  await clock.advance(1);
  assert.equal(first.aborted, true);
  assert.equal(fetch.calls.length, 1);
  await clock.advance(500); // 0.5 of the 1 s window
  assert.equal(fetch.calls.length, 2);
  fetch.last().snapshot(3, { runs: 3 });
  await flush();
  assert.equal(c.status, "live");
});

test("a fetchSnapshot that ignores the abort still times out (MatchStream)", async () => {
  const clock = new FakeClock();
  let calls = 0;
  const s = new MatchStream("m1", { fetchSnapshot: () => (calls++, new Promise(() => {})), timers: clock, random: () => 0.5, log: silentLog });
  s.subscribing();
  s.subscribed();
  await clock.advance(10_000);
  assert.equal(calls, 1);
  await clock.advance(500);
  assert.equal(calls, 2);
  assert.equal(s.phase, "fetching");
});

test("a stopped stream aborts the request it has out", async () => {
  const { clock, fetch, ws } = subscribedClient();
  ws.serverClose(1006);
  assert.equal(fetch.last().aborted, true);
  await clock.advance(0);
});

test("a gateway that never sends hello is left after 10 s, with growing backoff", async () => {
  const { clock, WS, fetch, c, statuses } = setup();
  c.subscribe("m1", () => {});
  const ws = WS.last();
  ws.serverOpen();
  await clock.advance(9999);
  assert.equal(ws.closedWith, null);
  await clock.advance(1);
  assert.deepStrictEqual(ws.closedWith, { code: 4000, reason: "hello timeout" });
  await flush();
  assert.equal(statuses.at(-1), "reconnecting 2500");
  await run(clock, WS, fetch, { ms: 120_000, step: 100, onSocket: (s) => s !== ws && s.serverOpen() });
  assert.ok(WS.instances.length <= 8, `${WS.instances.length} connections in 2 minutes`);
});

for (const heartbeat_s of [0, undefined, "soon", -1]) {
  test(`hello with heartbeat_s ${JSON.stringify(heartbeat_s)} gets the default 20 s watch`, async () => {
    const { clock, WS, fetch, c } = setup();
    c.subscribe("m1", () => {});
    const ws = WS.last();
    ws.serverOpen();
    ws.serverSend({ type: "hello", node: "gw", heartbeat_s });
    ws.serverSend({ type: "subscribed", match: "m1" });
    fetch.last().snapshot(1, {});
    await flush();
    await clock.advance(40_000);
    assert.equal(ws.ops("subscribe").length, 2, "the probe after 2 silent heartbeats");
    await clock.advance(19_999);
    assert.equal(ws.closedWith, null);
    await clock.advance(1);
    assert.equal(ws.closedWith?.code, 4000, "a link silent for 3 heartbeats is dead");
  });
}

test("an absurd heartbeat_s is clamped to 3600 s, not an overflowing timer that drops the link at once", async () => {
  const { clock, WS, fetch, c } = setup();
  c.subscribe("m1", () => {});
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 1e7 });
  ws.serverSend({ type: "subscribed", match: "m1" });
  fetch.last().snapshot(1, {});
  await flush();
  await clock.advance(60_000);
  assert.equal(ws.closedWith, null);
  assert.ok(clock.maxDelay <= MAX_TIMER);
  await clock.advance(3 * 3600_000 - 60_000);
  assert.equal(ws.closedWith?.code, 4000);
});

test("a snapshot of another epoch than the deltas is asked again with backoff, not on every delta", async () => {
  const { clock, WS, fetch, c } = setup();
  c.subscribe("m1", () => {});
  const ws = await live(WS, fetch, 1);
  const before = fetch.calls.length;
  // The gateway is in epoch e2 for 10 s (a delta every 100 ms); the store stays in e1.
  for (let i = 0; i < 100; i++) {
    ws.serverSend(delta(1 + i, { n: i }, "e2"));
    for (const call of fetch.pending()) call.respond(200, { match: "m1", epoch: "e1", seq: 1, state: { runs: 1 } });
    await clock.advance(100);
  }
  const asked = fetch.calls.length - before;
  assert.ok(asked <= 6, `${asked} snapshot requests for 100 deltas`);
  assert.equal(c.status, "resyncing");
  // The store catches up: within the backoff's cap (30 s) the next request finds it.
  await run(clock, WS, fetch, { ms: 31_000, step: 100, answer: (call) => call.respond(200, { match: "m1", epoch: "e2", seq: 100, state: { n: 99 } }) });
  assert.deepStrictEqual([c.status, c.state("m1")], ["live", { n: 99 }]);
});

test("a token valid for 100 days is not refreshed at once (its refresh timer would overflow)", async () => {
  const clock = new FakeClock();
  clock.now = 1_800_000_000_000;
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  let minted = 0;
  const token = () => fakeJWT({ sub: "u", exp: Math.floor(clock.now / 1000) + 100 * 86400 + minted++ });
  const c = connect({ url: "ws://gw:8080/ws", token, WebSocket: WS, fetch, timers: clock, now: () => clock.now, random: () => 0.5, document: null, window: null, navigator: null, log: silentLog });
  c.subscribe("m1", () => {});
  await flush();
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 3600 });
  await clock.advance(1000);
  assert.equal(ws.ops("auth").length, 0);
  assert.ok(clock.maxDelay <= MAX_TIMER);
});

test("an onState that throws does not stop the stream's retry", async () => {
  const clock = new FakeClock();
  let calls = 0;
  const s = new MatchStream("m1", {
    fetchSnapshot: async () => (calls++, { match: "m1", epoch: "e1", seq: 1, state: { runs: 1 } }),
    onState: () => {
      throw new Error("an app's bug");
    },
    timers: clock,
    random: () => 0.5,
    log: silentLog,
  });
  s.subscribing();
  s.delta(delta(5, { runs: 5 })); // buffered: the snapshot at 1 leaves a gap before it
  s.subscribed();
  await flush();
  assert.equal(calls, 1);
  await clock.advance(500); // 0.5 of the 1 s window
  await flush();
  assert.equal(calls, 2, "the snapshot that left a gap is asked for again");
});
