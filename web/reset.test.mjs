// PROTOCOL.md client algorithm step 5: the attempt count goes back to zero only once a
// connection delivered a delta or stayed open 30 s, never on `hello` alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "./crease-client.js";
import { STABLE_CONNECTION_MS } from "./crease-backoff.js";
import { FakeClock, fakeFetch, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

function setup() {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const delays = [];
  const c = connect({ url: "ws://gw:8080/ws", WebSocket: WS, fetch, timers: clock, random: () => 0.999, document: null, window: null, navigator: null, log: silentLog });
  c.on("status", (s, info) => s === "reconnecting" && delays.push(info.inMs));
  return { clock, WS, fetch, c, delays };
}

/** The newest connection, opened by the gateway with its hello. */
function openWithHello(WS, heartbeat_s) {
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s });
  return ws;
}

/** The gateway of the issue: it upgrades, says hello, and closes at once. */
async function helloThenClose(clock, WS, delays) {
  const ws = openWithHello(WS, 25);
  ws.serverClose(1011);
  await clock.advance(delays.at(-1));
}

test("a gateway that closes right after hello makes the delays grow", async () => {
  const { clock, WS, c, delays } = setup();
  c.subscribe("m1", () => {});
  for (let i = 0; i < 8; i++) await helloThenClose(clock, WS, delays);
  // 0.999 of the windows 5 s (spread floor) x4, 8 s, 16 s, then the 30 s cap.
  assert.deepStrictEqual(delays, [4995, 4995, 4995, 4995, 7992, 15984, 29970, 29970]);
  assert.equal(WS.instances.length, 9);
});

test("a delivered delta resets the attempts; a delta of a match not subscribed does not", async () => {
  const { clock, WS, fetch, c, delays } = setup();
  c.subscribe("m1", () => {});
  for (let i = 0; i < 5; i++) await helloThenClose(clock, WS, delays);
  let ws = openWithHello(WS, 25);
  ws.serverSend({ type: "delta", match: "other", epoch: "e1", seq: 9, prio: "high", ts: 1, patch: {} });
  ws.serverClose(1006);
  assert.equal(delays.at(-1), 15984, "not for a delta of another match");
  await clock.advance(15984);
  ws = openWithHello(WS, 25);
  ws.serverSend({ type: "subscribed", match: "m1" });
  fetch.last().snapshot(3, {});
  await flush();
  ws.serverSend({ type: "delta", match: "m1", epoch: "e1", seq: 4, prio: "high", ts: 1, patch: { n: 4 } });
  ws.serverClose(1006);
  assert.equal(delays.at(-1), 4995, "attempts start over after a delta");
});

test("a connection open 30 s resets the attempts even without a delta", async () => {
  const { clock, WS, c, delays } = setup();
  c.subscribe("m1", () => {});
  for (let i = 0; i < 5; i++) await helloThenClose(clock, WS, delays);
  assert.equal(delays.at(-1), 7992);
  let ws = openWithHello(WS, 0);
  await clock.advance(STABLE_CONNECTION_MS - 1);
  ws.serverClose(1006);
  assert.equal(delays.at(-1), 15984, "29.999 s is not enough");
  await clock.advance(15984);
  ws = openWithHello(WS, 0);
  await clock.advance(STABLE_CONNECTION_MS);
  ws.serverClose(1006);
  assert.equal(delays.at(-1), 4995);
});
