// The connection and contract version 2: since on reconnect, recovered, catchup, where
// snapshots come from.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { connect, httpBaseFromWsURL } from "./crease-client.js";
import { FakeClock, fakeFetch, fakeJWT, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

function setup(more = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const statuses = [];
  const c = connect({ url: "ws://gw:8080/ws", WebSocket: WS, fetch, timers: clock, random: () => 0, document: null, window: null, navigator: null, log: silentLog, ...more });
  c.on("status", (s) => statuses.push(s));
  return { clock, WS, fetch, c, statuses };
}

test("on reconnect every match subscribes with since = its position; recovered:true skips the snapshot", async () => {
  const { clock, WS, fetch, c, statuses } = setup();
  const seen = [];
  c.subscribe("a", (s, i) => seen.push(["a", i.epoch, i.seq, i.cause]));
  c.subscribe("b", (s, i) => seen.push(["b", i.epoch, i.seq, i.cause]));
  let ws = WS.last();
  ws.serverOpen();
  assert.deepStrictEqual(ws.ops("subscribe"), [{ op: "subscribe", match: "a" }, { op: "subscribe", match: "b" }], "nothing held: no since");
  ws.serverSend({ type: "subscribed", match: "a" });
  ws.serverSend({ type: "subscribed", match: "b" });
  fetch.calls[0].respond(200, { match: "a", epoch: "ea", seq: 5, state: { n: 5 } });
  fetch.calls[1].respond(200, { match: "b", seq: 9, state: { k: 9 } }); // a version 1 snapshot: no epoch
  await flush();
  ws.serverClose(1006);
  await clock.advance(0);
  ws = WS.last();
  ws.serverOpen();
  assert.deepStrictEqual(ws.ops("subscribe"), [{ op: "subscribe", match: "a", since: { epoch: "ea", seq: 5 } }, { op: "subscribe", match: "b" }]);
  assert.equal(statuses.at(-1), "resyncing");
  ws.serverSend({ type: "subscribed", match: "a", recovered: true });
  ws.serverSend({ type: "delta", match: "a", epoch: "ea", seq: 6, prio: "high", ts: 1, patch: { n: 6 } });
  ws.serverSend({ type: "subscribed", match: "b" });
  assert.equal(fetch.calls.length, 3, "only b fetches");
  fetch.last().respond(200, { match: "b", seq: 10, state: { k: 10 } });
  await flush();
  assert.equal(statuses.at(-1), "live");
  assert.deepStrictEqual(seen, [["a", "ea", 5, "snapshot"], ["b", "", 9, "snapshot"], ["a", "ea", 6, "delta"], ["b", "", 10, "resync"]]);
});

test("recovered:false takes the snapshot route", async () => {
  const { clock, WS, fetch, c } = setup();
  c.subscribe("a", () => {});
  let ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "subscribed", match: "a" });
  fetch.last().respond(200, { match: "a", epoch: "e", seq: 5, state: {} });
  await flush();
  ws.serverClose(1006);
  await clock.advance(0);
  ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "subscribed", match: "a", recovered: false });
  assert.equal(fetch.calls.length, 2);
  fetch.last().respond(200, { match: "a", epoch: "f", seq: 1, state: { fresh: true } });
  await flush();
  assert.deepStrictEqual([c.state("a")], [{ fresh: true }]);
});

test("catchup: true asks for catch-up deltas in the URL", () => {
  const { WS } = setup({ catchup: true, url: "ws://gw:8080/ws?match=a" });
  assert.equal(WS.last().url, "ws://gw:8080/ws?match=a&catchup=1");
});

test("the HTTP base: derived from the WebSocket URL, or given, or a snapshotURL function", async () => {
  assert.equal(httpBaseFromWsURL("ws://gw:8080/ws"), "http://gw:8081");
  assert.equal(httpBaseFromWsURL("wss://scores.example/ws"), "https://scores.example:8081");
  assert.equal(httpBaseFromWsURL("ws://[::1]:9/ws", "7"), "http://[::1]:7");
  for (const [more, want] of [
    [{ httpBase: "https://api.example/" }, "https://api.example/v1/matches/a%20b"],
    [{ snapshotURL: (id) => `/snap/${id}` }, "/snap/a b"],
    [{ url: () => "wss://live.example:443/ws" }, "https://live.example:8081/v1/matches/a%20b"],
  ]) {
    const { WS, fetch, c } = setup(more);
    c.subscribe("a b", () => {});
    WS.last().serverOpen();
    WS.last().serverSend({ type: "subscribed", match: "a b" });
    assert.equal(fetch.last().url, want);
    c.close();
  }
});

test("under Node with the real fetch: the derived base is absolute and the token goes as Bearer", async (t) => {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push([req.url, req.headers.authorization]);
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ match: "m1", epoch: "e", seq: 3, state: { runs: 3 } }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const { port } = server.address();
  const tok = fakeJWT({ exp: Math.floor(Date.now() / 1000) + 3600 });
  const WS = fakeWebSocketClass();
  // The gateway's HTTP listener is on another port than its WebSocket: say which.
  const c = connect({ url: `ws://127.0.0.1:1/ws`, httpBase: `http://127.0.0.1:${port}`, token: tok, WebSocket: WS, document: null, window: null, navigator: null, log: silentLog });
  t.after(() => c.close());
  const first = new Promise((resolve) => c.subscribe("m1", (s, i) => resolve([i.epoch, i.seq, s.runs])));
  WS.last().serverOpen();
  WS.last().serverSend({ type: "subscribed", match: "m1" });
  assert.deepStrictEqual(await first, ["e", 3, 3]);
  assert.deepStrictEqual(seen, [["/v1/matches/m1", `Bearer ${tok}`]]);
});
