import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "./crease-client.js";
import { FakeClock, FakeTarget, fakeFetch, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

function setup({ random = () => 0.5, document, window, navigator } = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const statuses = [];
  const c = connect({
    url: "ws://gw:8080/ws",
    WebSocket: WS,
    fetch,
    timers: clock,
    random,
    document: document ?? null,
    window: window ?? null,
    navigator: navigator ?? null,
    log: silentLog,
  });
  c.on("status", (s, info) => statuses.push(s === "reconnecting" ? `${s} ${info.inMs}` : info.error ? `${s} error ${info.error.code}` : s));
  return { clock, WS, fetch, c, statuses };
}

/** Open the current socket, say hello, confirm subscriptions and answer snapshots with seq. */
async function goLive(WS, fetch, snaps = {}, heartbeat_s = 25) {
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw1", heartbeat_s });
  const before = fetch.calls.length;
  for (const op of ws.ops("subscribe")) ws.serverSend({ type: "subscribed", match: op.match });
  await flush();
  for (const call of fetch.calls.slice(before)) {
    const id = call.url.split("/").pop();
    const [seq, state] = snaps[id] ?? [1, { match: id }];
    call.snapshot(seq, state);
  }
  await flush();
  return ws;
}

test("connects, subscribes, fetches the snapshot after `subscribed`, and goes live", async () => {
  const { WS, fetch, c, statuses } = setup();
  const seen = [];
  c.subscribe("m1", (state, info) => seen.push([info.cause, info.seq, state.runs]));
  assert.equal(WS.instances.length, 1);
  assert.equal(WS.last().url, "ws://gw:8080/ws");
  const ws = WS.last();
  ws.serverOpen();
  assert.deepStrictEqual(ws.sent, [{ op: "subscribe", match: "m1" }]);
  assert.equal(fetch.calls.length, 0, "the snapshot waits for `subscribed`");
  ws.serverSend({ type: "subscribed", match: "m1" });
  assert.equal(fetch.calls.length, 1);
  // The HTTP base comes from the WebSocket URL (ws -> http, same host, port 8081), so
  // the default works under Node too, where a relative URL cannot be fetched.
  assert.equal(fetch.last().url, "http://gw:8081/v1/matches/m1");
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 8, prio: "high", ts: 1, patch: { runs: 8 } });
  fetch.last().snapshot(7, { runs: 7 });
  await flush();
  assert.deepStrictEqual(seen, [["snapshot", 8, 8]]);
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 9, prio: "normal", ts: 2, patch: { runs: 9 } });
  assert.deepStrictEqual(seen.at(-1), ["delta", 9, 9]);
  assert.equal(c.status, "live");
  assert.deepStrictEqual(statuses, ["connecting", "live"]);
});

test("a snapshot 404 (match not started) starts from seq 0", async () => {
  const { WS, fetch, c } = setup();
  const seen = [];
  c.subscribe("later", (state, info) => seen.push([info.seq, state]));
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "subscribed", match: "later" });
  fetch.last().respond(404, { error: "not found" });
  await flush();
  ws.serverSend({ type: "delta", match: "later", epoch: "e1", seq: 1, prio: "high", ts: 1, patch: { status: "live" } });
  assert.deepStrictEqual(seen, [[0, null], [1, { status: "live" }]]);
});

test("reconnects after a close with a jittered, growing, capped delay", async () => {
  let r = 0.5;
  const { clock, WS, fetch, c, statuses } = setup({ random: () => r });
  c.subscribe("m1", () => {});
  await goLive(WS, fetch);
  WS.last().serverClose(1006);
  assert.equal(statuses.at(-1), "reconnecting 2500", "first retry: 0.5 of the 0-5 s spread");
  await clock.advance(2499);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1);
  assert.equal(WS.instances.length, 2);
  assert.equal(statuses.at(-1), "connecting");
  // Failures before hello keep growing the window: 5000 (spread floor) ... 8000, 16000, cap 30000.
  r = 0.999;
  const expected = [4995, 4995, 4995, 7992, 15984, 29970, 29970];
  for (const ms of expected) {
    WS.last().serverClose(1006);
    assert.equal(statuses.at(-1), `reconnecting ${ms}`);
    const n = WS.instances.length;
    await clock.advance(ms);
    assert.equal(WS.instances.length, n + 1);
  }
  // A hello alone does not reset the attempts (a gateway closing right after it would
  // drive a tight loop); a delta does.
  let ws = await goLive(WS, fetch);
  ws.serverClose(1006);
  assert.equal(statuses.at(-1), "reconnecting 29970");
  await clock.advance(29970);
  ws = await goLive(WS, fetch);
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 2, prio: "high", ts: 1, patch: {} });
  ws.serverClose(1006);
  assert.equal(statuses.at(-1), "reconnecting 4995");
});

test("reconnect{after_ms} closes, waits exactly after_ms, then normal backoff", async () => {
  const { clock, WS, fetch, statuses } = setup({ random: () => 0.1 });
  const ws = await goLive(WS, fetch);
  ws.serverSend({ type: "reconnect", after_ms: 7000 });
  assert.equal(ws.closedWith.code, 1000, "the client closes the draining connection");
  assert.equal(statuses.at(-1), "reconnecting 7000");
  await flush(); // the close event of the old socket must not schedule another retry
  await clock.advance(6999);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1);
  assert.equal(WS.instances.length, 2);
  WS.last().serverClose(1006);
  assert.equal(statuses.at(-1), "reconnecting 500", "then the usual jittered backoff (0.1 of 5 s)");
});

test("resubscribes every match after a reconnect and resyncs each", async () => {
  const { clock, WS, fetch, c, statuses } = setup({ random: () => 0 });
  const seen = { a: [], b: [] };
  c.subscribe("a", (s, i) => seen.a.push([i.cause, i.seq]));
  c.subscribe("b", (s, i) => seen.b.push([i.cause, i.seq]));
  await goLive(WS, fetch, { a: [5, {}], b: [50, {}] });
  assert.equal(fetch.calls.length, 2);
  WS.last().serverClose(1001);
  await clock.advance(0);
  const ws2 = WS.last();
  assert.notEqual(ws2, WS.instances[0]);
  ws2.serverOpen();
  assert.deepStrictEqual(ws2.ops("subscribe").map((o) => o.match).sort(), ["a", "b"]);
  assert.equal(statuses.at(-1), "resyncing");
  // Deltas from the new socket wait for the new snapshot.
  ws2.serverSend({ type: "subscribed", match: "a" });
  ws2.serverSend({ type: "subscribed", match: "b" });
  assert.equal(fetch.calls.length, 4, "every match refetches its snapshot");
  ws2.serverSend({ type: "delta", match: "a", epoch: "e1", seq: 9, prio: "high", ts: 1, patch: { x: 9 } });
  fetch.calls[2].snapshot(8, {});
  fetch.calls[3].snapshot(60, {});
  await flush();
  assert.deepStrictEqual(seen.a, [["snapshot", 5], ["resync", 9]]);
  assert.deepStrictEqual(seen.b, [["snapshot", 50], ["resync", 60]]);
  assert.equal(statuses.at(-1), "live");
});

test("a gap or a resync frame refetches without reconnecting", async () => {
  const { WS, fetch, c } = setup();
  const seen = [];
  c.subscribe("m1", (s, i) => seen.push([i.cause, i.seq]));
  const ws = await goLive(WS, fetch, { m1: [3, {}] });
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 5, prio: "high", ts: 1, patch: {} });
  assert.equal(fetch.calls.length, 2);
  assert.equal(c.status, "resyncing");
  fetch.last().snapshot(5, {});
  await flush();
  ws.serverSend({ type: "resync", match: "m1", reason: "slow" });
  assert.equal(fetch.calls.length, 3);
  fetch.last().snapshot(11, {});
  await flush();
  assert.deepStrictEqual(seen, [["snapshot", 3], ["resync", 5], ["resync", 11]]);
  assert.equal(WS.instances.length, 1);
  assert.equal(ws.closedWith, null);
  assert.equal(c.status, "live");
});

test("heartbeat: probe after 2 silent heartbeats, reconnect after 3", async () => {
  const { clock, WS, fetch, c, statuses } = setup({ random: () => 0 });
  c.subscribe("m1", () => {});
  const ws = await goLive(WS, fetch, {}, 10);
  await clock.advance(19999);
  assert.equal(ws.ops("subscribe").length, 1);
  await clock.advance(1);
  assert.deepStrictEqual(ws.sent.at(-1), { op: "subscribe", match: "m1" }, "a repeated subscribe asks for a frame");
  ws.serverSend({ type: "subscribed", match: "m1" }); // the link is alive: the watch restarts
  await clock.advance(29999);
  assert.equal(ws.closedWith, null);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1);
  assert.equal(ws.closedWith.code, 4000, "silence for 3 heartbeats closes the connection");
  assert.ok(WS.instances.length === 2 || statuses.includes("reconnecting 0"));
  await clock.advance(0);
  assert.equal(WS.instances.length, 2);
  assert.equal(fetch.calls.length, 1, "the repeated subscribe did not refetch");
});

test("heartbeat probe without subscriptions uses an op answered by unknown_op, which is not reported", async () => {
  const { clock, WS, fetch, statuses } = setup();
  const ws = await goLive(WS, fetch, {}, 1);
  await clock.advance(2000);
  assert.deepStrictEqual(ws.sent.at(-1), { op: "ping" });
  ws.serverSend({ type: "error", code: "unknown_op", message: "unknown op" });
  assert.ok(!statuses.some((s) => s.includes("error")));
  await clock.advance(2999);
  assert.equal(ws.closedWith, null);
});

test("error frames are reported on status and error listeners; the connection stays", async () => {
  const { WS, fetch, c, statuses } = setup();
  const errors = [];
  c.on("error", (f) => errors.push(f.code));
  const ws = await goLive(WS, fetch);
  ws.serverSend({ type: "error", code: "too_many_subscriptions", message: "limit 16" });
  assert.deepStrictEqual(errors, ["too_many_subscriptions"]);
  assert.equal(statuses.at(-1), "live error too_many_subscriptions");
  assert.equal(ws.closedWith, null);
  assert.equal(WS.instances.length, 1);
});

test("event frames go to event listeners; garbage frames are ignored", async () => {
  const { WS, fetch, c } = setup();
  const events = [];
  c.on("event", (f) => events.push(f.text));
  const ws = await goLive(WS, fetch);
  ws.onmessage({ data: "not json" });
  ws.serverSend({ type: "event", match: "m1", prio: "low", ts: 1, kind: "commentary", text: "FOUR!" });
  assert.deepStrictEqual(events, ["FOUR!"]);
});

test("unsubscribe sends the op once the last listener leaves", async () => {
  const { WS, fetch, c } = setup();
  const off1 = c.subscribe("m1", () => {});
  const off2 = c.subscribe("m1", () => {});
  const ws = await goLive(WS, fetch);
  assert.equal(ws.ops("subscribe").length, 1);
  off1();
  assert.equal(ws.ops("unsubscribe").length, 0);
  off2();
  off2();
  assert.deepStrictEqual(ws.ops("unsubscribe"), [{ op: "unsubscribe", match: "m1" }]);
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 2, prio: "high", ts: 1, patch: {} });
  assert.equal(c.state("m1"), undefined);
});

test("a hidden page closes the socket (offline) and reconnects at once when visible", async () => {
  const document = new FakeTarget({ visibilityState: "visible" });
  const { clock, WS, fetch, c, statuses } = setup({ document });
  c.subscribe("m1", () => {});
  const ws = await goLive(WS, fetch);
  document.visibilityState = "hidden";
  document.dispatch("visibilitychange");
  assert.equal(ws.closedWith.code, 1000);
  assert.equal(c.status, "offline");
  await flush();
  await clock.advance(120000);
  assert.equal(WS.instances.length, 1, "no reconnects while hidden");
  document.visibilityState = "visible";
  document.dispatch("visibilitychange");
  assert.equal(WS.instances.length, 2, "reconnects without waiting");
  const ws2 = WS.last();
  ws2.serverOpen();
  assert.deepStrictEqual(ws2.ops("subscribe"), [{ op: "subscribe", match: "m1", since: { epoch: "e1", seq: 1 } }]);
  ws2.serverSend({ type: "subscribed", match: "m1", recovered: false });
  assert.equal(fetch.calls.length, 2, "resyncs on resume");
  assert.deepStrictEqual(statuses.slice(-3), ["offline", "connecting", "resyncing"]);
});

test("browser offline pauses, online resumes; a pending retry is cancelled", async () => {
  const window = new FakeTarget();
  const { clock, WS, fetch, c } = setup({ window, random: () => 0.9 });
  await goLive(WS, fetch);
  WS.last().serverClose(1006);
  assert.equal(c.status, "reconnecting");
  window.dispatch("offline");
  assert.equal(c.status, "offline");
  await clock.advance(60000);
  assert.equal(WS.instances.length, 1);
  window.dispatch("online");
  assert.equal(WS.instances.length, 2);
  assert.equal(c.status, "connecting");
});

test("starting hidden or offline waits for visibility / network", async () => {
  const document = new FakeTarget({ visibilityState: "hidden" });
  const { WS, c } = setup({ document, navigator: { onLine: true } });
  assert.equal(WS.instances.length, 0);
  assert.equal(c.status, "offline");
  document.visibilityState = "visible";
  document.dispatch("visibilitychange");
  assert.equal(WS.instances.length, 1);

  const { WS: WS2, c: c2 } = setup({ navigator: { onLine: false }, window: new FakeTarget() });
  assert.equal(WS2.instances.length, 0);
  assert.equal(c2.status, "offline");
});

test("close() stops everything for good", async () => {
  const { clock, WS, fetch, c } = setup();
  const ws = await goLive(WS, fetch);
  c.close();
  assert.equal(ws.closedWith.code, 1000);
  assert.equal(c.status, "offline");
  await flush();
  await clock.advance(100000);
  assert.equal(WS.instances.length, 1);
});

test("a snapshot answered 503 is asked again no sooner than its Retry-After", async () => {
  const { clock, WS, fetch, c, statuses } = setup();
  const seen = [];
  c.subscribe("m1", (state, info) => seen.push([info.seq, state.runs]));
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw1", heartbeat_s: 25 });
  ws.serverSend({ type: "subscribed", match: "m1" });
  assert.equal(fetch.calls.length, 1);
  fetch.last().respond(503, { error: "store behind" }, { "Retry-After": "2" });
  await flush();
  await clock.advance(2000); // the backoff alone (0.5 of 1000 ms) would have asked by now
  assert.equal(fetch.calls.length, 1);
  await clock.advance(500);
  assert.equal(fetch.calls.length, 2);
  fetch.last().snapshot(3, { runs: 3 });
  await flush();
  assert.deepStrictEqual(seen, [[3, 3]]);
  assert.equal(statuses.at(-1), "live");
});
