// Refused subscriptions (error frames with a match): that match is left out, the
// others go on, and the status does not stay at resyncing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "./crease-client.js";
import { FakeClock, fakeFetch, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

function setup({ random = () => 0.5 } = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const statuses = [];
  const errors = [];
  const c = connect({ url: "ws://gw:8080/ws", WebSocket: WS, fetch, timers: clock, random, document: null, window: null, navigator: null, log: silentLog });
  c.on("status", (s, info) => statuses.push(info.error ? `${s} error ${info.error.code} ${info.error.match}` : s));
  c.on("error", (f) => errors.push(f));
  return { clock, WS, fetch, c, statuses, errors };
}

async function openWith(WS, ...matches) {
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 25 });
  return ws;
}

for (const code of ["forbidden", "bad_request", "too_many_subscriptions"]) {
  test(`a subscribe refused with ${code}: the other matches go live, and so does the status`, async () => {
    const { WS, fetch, c, statuses, errors } = setup();
    const seen = [];
    c.subscribe("ok", (s, i) => seen.push(["ok", i.seq]));
    c.subscribe("no", (s, i) => seen.push(["no", i.seq]));
    const ws = await openWith(WS);
    ws.serverSend({ type: "subscribed", match: "ok" });
    ws.serverSend({ type: "error", code, match: "no", message: "refused" });
    fetch.last().snapshot(3, { n: 3 });
    await flush();
    assert.deepStrictEqual(seen, [["ok", 3]]);
    assert.equal(fetch.calls.length, 1, "nothing fetched for the refused match");
    assert.equal(c.status, "live");
    assert.equal(statuses.at(-1), "live");
    assert.ok(statuses.includes(`resyncing error ${code} no`) || statuses.includes(`connecting error ${code} no`));
    assert.deepStrictEqual(errors.map((e) => [e.code, e.match]), [[code, "no"]]);
    assert.deepStrictEqual(c.refusal("no"), { code, message: "refused" });
    assert.equal(c.refusal("ok"), null);
    ws.serverSend({ type: "delta", match: "no", epoch: "e1", seq: 1, prio: "high", ts: 1, patch: {} });
    assert.equal(c.state("no"), undefined, "a refused match takes no delta");
  });
}

test("rate_limited: the subscribe goes again after a jittered wait, on the same socket", async () => {
  const { clock, WS, fetch, c } = setup({ random: () => 0.5 });
  c.subscribe("m1", () => {});
  const ws = await openWith(WS);
  ws.serverSend({ type: "error", code: "rate_limited", match: "m1", message: "slow down" });
  assert.equal(c.status, "live");
  await clock.advance(499);
  assert.equal(ws.ops("subscribe").length, 1);
  await clock.advance(1); // 0.5 of a 1 s window
  assert.equal(ws.ops("subscribe").length, 2);
  assert.equal(c.status, "resyncing");
  ws.serverSend({ type: "error", code: "rate_limited", match: "m1", message: "slow down" });
  await clock.advance(1000); // the window doubled
  assert.equal(ws.ops("subscribe").length, 3);
  ws.serverSend({ type: "subscribed", match: "m1" });
  fetch.last().snapshot(2, {});
  await flush();
  assert.equal(c.status, "live");
  assert.equal(WS.instances.length, 1);
});

test("too_many_subscriptions: tried again when an accepted match is unsubscribed", async () => {
  const { WS, fetch, c } = setup();
  const offA = c.subscribe("a", () => {});
  c.subscribe("b", () => {});
  const ws = await openWith(WS);
  ws.serverSend({ type: "subscribed", match: "a" });
  ws.serverSend({ type: "error", code: "too_many_subscriptions", match: "b", message: "limit 1" });
  fetch.last().snapshot(1, {});
  await flush();
  assert.equal(c.status, "live");
  offA();
  assert.deepStrictEqual(ws.sent.slice(-2), [{ op: "unsubscribe", match: "a" }, { op: "subscribe", match: "b" }]);
  // The refusal of a subscribe sent before an unsubscribe went out came too late to
  // know of the freed slot: it is tried once more.
  const offC = c.subscribe("c", () => {});
  c.subscribe("d", () => {});
  ws.serverSend({ type: "subscribed", match: "b" });
  offC();
  ws.serverSend({ type: "error", code: "too_many_subscriptions", match: "d", message: "limit" });
  assert.deepStrictEqual(ws.sent.at(-1), { op: "subscribe", match: "d" });
});

test("a refused match is subscribed again on the next connection", async () => {
  const { clock, WS, c } = setup({ random: () => 0 });
  c.subscribe("no", () => {});
  let ws = await openWith(WS);
  ws.serverSend({ type: "error", code: "forbidden", match: "no", message: "not in the claim" });
  ws.serverClose(1006);
  await clock.advance(0);
  ws = await openWith(WS);
  assert.deepStrictEqual(ws.ops("subscribe"), [{ op: "subscribe", match: "no" }]);
  assert.equal(c.refusal("no"), null);
});

test("the heartbeat probe never uses a refused match", async () => {
  const { clock, WS, c } = setup();
  c.subscribe("no", () => {});
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 1 });
  ws.serverSend({ type: "error", code: "forbidden", match: "no", message: "x" });
  await clock.advance(2000);
  assert.deepStrictEqual(ws.sent.at(-1), { op: "ping" });
});
