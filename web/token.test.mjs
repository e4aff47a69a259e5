// Tokens: the bearer.<jwt> subprotocol, Authorization: Bearer on snapshots, a provider
// asked on every connect and again before the token expires (sent with `auth`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, tokenExpiryMs, tokenRefreshDelay } from "./crease-client.js";
import { FakeClock, fakeFetch, fakeJWT, fakeWebSocketClass, flush, silentLog } from "./fakes.mjs";

const T0 = 1_800_000_000_000; // ms

function newClock() {
  const clock = new FakeClock();
  clock.now = T0;
  return clock;
}

function setup(token, { clock = newClock(), ...more } = {}) {
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch();
  const statuses = [];
  const c = connect({ url: "ws://gw:8080/ws?match=m1", token, WebSocket: WS, fetch, timers: clock, now: () => clock.now, random: () => 0.5, document: null, window: null, navigator: null, log: silentLog, ...more });
  c.on("status", (s, info) => statuses.push(s === "reconnecting" ? `${s} ${info.inMs}` : s));
  return { clock, WS, fetch, c, statuses };
}

/** A provider minting a token of lifetimeMs on clock per call (exp one second later each time). */
function minter(clock, lifetimeMs) {
  const issued = [];
  const provide = () => {
    const tok = fakeJWT({ sub: "u", exp: Math.floor((clock.now + lifetimeMs) / 1000) + issued.length });
    issued.push(tok);
    return tok;
  };
  provide.issued = issued;
  provide.last = () => issued.at(-1);
  return provide;
}

async function goLive(WS, fetch, seq = 1) {
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 3600 }); // the longest: no heartbeat timeout in these tests
  for (const op of ws.ops("subscribe")) ws.serverSend({ type: "subscribed", match: op.match });
  await flush();
  for (const call of fetch.calls.filter((c) => !c.done)) {
    call.done = true;
    call.snapshot(seq, {});
  }
  await flush();
  return ws;
}

test("tokenExpiryMs reads exp; tokenRefreshDelay keeps a margin, half the lifetime at most, 1 s at least", () => {
  assert.equal(tokenExpiryMs(fakeJWT({ exp: 1900000000 })), 1900000000000);
  assert.equal(tokenExpiryMs(fakeJWT({ exp: 1900000000.25 })), 1900000000250);
  for (const bad of [undefined, "", "abc", "a.b", "a.%%%.c", fakeJWT({}), fakeJWT({ exp: "soon" }), fakeJWT({ exp: -5 }), fakeJWT({ exp: 1e300 })]) {
    assert.equal(tokenExpiryMs(bad), undefined, String(bad));
  }
  assert.equal(tokenRefreshDelay(0, 3600_000, 30_000), 3570_000);
  assert.equal(tokenRefreshDelay(0, 20_000, 30_000), 10_000);
  assert.equal(tokenRefreshDelay(0, 500, 30_000), 1000);
  assert.equal(tokenRefreshDelay(10_000, 0, 30_000), 1000);
});

test("a string token goes as the subprotocol, never in the URL, and as Bearer with snapshots", async () => {
  const tok = fakeJWT({ exp: T0 / 1000 + 3600 });
  const { clock, WS, fetch, c } = setup(tok);
  c.subscribe("m1", () => {});
  const ws = WS.last();
  assert.deepStrictEqual(ws.protocols, [`bearer.${tok}`]);
  assert.equal(ws.url, "ws://gw:8080/ws?match=m1");
  await goLive(WS, fetch);
  assert.deepStrictEqual(fetch.calls[0].init.headers, { Authorization: `Bearer ${tok}` });
  await clock.advance(7200_000);
  assert.equal(ws.ops("auth").length, 0, "a fixed token is never refreshed");
});

test("no token: no subprotocol and no Authorization", async () => {
  const { WS, fetch, c } = setup(undefined);
  c.subscribe("m1", () => {});
  assert.deepStrictEqual(WS.last().protocols, []);
  await goLive(WS, fetch);
  assert.equal(fetch.calls[0].init.headers, undefined);
});

for (const kind of ["sync", "async"]) {
  test(`a ${kind} provider is asked for a fresh token on every connect`, async () => {
    const clock0 = newClock();
    const mint = minter(clock0, 3600_000);
    const provider = kind === "sync" ? mint : async () => mint();
    const { WS, fetch, c } = setup(provider, { clock: clock0 });
    c.subscribe("m1", () => {});
    assert.equal(WS.instances.length, 0, "the socket waits for the token");
    assert.equal(c.status, "connecting");
    await flush();
    assert.deepStrictEqual(WS.last().protocols, [`bearer.${mint.last()}`]);
    await goLive(WS, fetch);
    WS.last().serverClose(1006);
    await clock0.advance(2500);
    await flush();
    assert.equal(WS.instances.length, 2);
    assert.equal(mint.issued.length, 2);
    assert.deepStrictEqual(WS.last().protocols, [`bearer.${mint.last()}`]);
    assert.notEqual(mint.issued[0], mint.issued[1]);
  });
}

/** A client with tokens of 2 minutes refreshed 45 s before exp, subscribed to m1 (live) and vip; refuseVip answers vip forbidden at once. */
async function vipClient(refuseVip) {
  const clock = newClock();
  const mint = minter(clock, 120_000);
  const s = setup(mint, { tokenRefreshMarginMs: 45_000, clock });
  await flush();
  s.c.subscribe("m1", () => {});
  s.c.subscribe("vip", () => {});
  const ws = s.WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", node: "gw", heartbeat_s: 3600 }); // the longest: no heartbeat timeout in these tests
  ws.serverSend({ type: "subscribed", match: "m1" });
  if (refuseVip) ws.serverSend({ type: "error", code: "forbidden", match: "vip", message: "not in the claim" });
  s.fetch.last().snapshot(1, {});
  await flush();
  return { clock, mint, s, ws };
}

test("the token is refreshed with auth before it expires; forbidden matches are tried again", async () => {
  const { clock, mint, s, ws } = await vipClient(true);
  assert.equal(s.c.status, "live");
  await clock.advance(74_999);
  assert.equal(ws.ops("auth").length, 0);
  await clock.advance(1); // exp 120 s - margin 45 s
  assert.deepStrictEqual(ws.ops("auth"), [{ op: "auth", token: mint.last() }]);
  assert.equal(mint.issued.length, 2);
  assert.deepStrictEqual(ws.sent.at(-1), { op: "subscribe", match: "vip" }, "the new claim may allow it");
  ws.serverSend({ type: "subscribed", match: "vip" });
  await flush();
  assert.deepStrictEqual(s.fetch.last().init.headers, { Authorization: `Bearer ${mint.last()}` });
  // The next refresh counts from the new token's exp (a second later, see minter).
  await clock.advance(75_999);
  assert.equal(ws.ops("auth").length, 1);
  await clock.advance(1);
  assert.equal(ws.ops("auth").length, 2);
  assert.equal(s.WS.instances.length, 1, "no reconnect for a refresh");
});

test("a forbidden that comes after the auth answers the old token: the subscribe is sent again at once", async () => {
  const { clock, ws } = await vipClient(false);
  await clock.advance(75_000); // the refresh: auth goes out before the refusal of vip comes
  assert.equal(ws.ops("auth").length, 1);
  const before = ws.ops("subscribe").length;
  ws.serverSend({ type: "error", code: "forbidden", match: "vip", message: "not in the claim" });
  await flush();
  assert.equal(ws.ops("subscribe").length, before + 1);
  assert.deepStrictEqual(ws.sent.at(-1), { op: "subscribe", match: "vip" });
  // Refused again under the new token: no loop.
  ws.serverSend({ type: "error", code: "forbidden", match: "vip", message: "not in the claim" });
  await flush();
  assert.equal(ws.ops("subscribe").length, before + 1);
});

test("a refresh that fails or brings no newer token is retried with backoff; no auth meanwhile", async () => {
  const clock = newClock();
  const same = fakeJWT({ exp: T0 / 1000 + 60 });
  const mint = minter(clock, 60_000);
  let calls = 0;
  const provider = async () => {
    calls++;
    if (calls <= 2) return same; // the connect, then a refresh with the same token
    if (calls === 3) throw new Error("identity provider down");
    return mint();
  };
  const { WS, fetch, c } = setup(provider, { clock, random: () => 0 });
  await flush();
  const ws = await goLive(WS, fetch);
  await clock.advance(30_000); // refresh: the same token
  assert.equal(ws.ops("auth").length, 0);
  assert.equal(calls, 2);
  await clock.advance(1000); // retried after the 1 s floor: the provider fails
  assert.equal(calls, 3);
  assert.equal(ws.ops("auth").length, 0);
  await clock.advance(1000);
  assert.equal(calls, 4);
  assert.deepStrictEqual(ws.ops("auth"), [{ op: "auth", token: mint.last() }]);
  c.close();
});

test("token_expired then close 4001: the client reconnects with a fresh token", async () => {
  const clock = newClock();
  const mint = minter(clock, 3600_000);
  const errors = [];
  const { WS, fetch, c } = setup(mint, { clock });
  c.on("error", (f) => errors.push(f.code));
  c.subscribe("m1", () => {});
  await flush();
  const ws = await goLive(WS, fetch);
  ws.serverSend({ type: "error", code: "token_expired", message: "token expired" });
  ws.serverClose(4001);
  assert.deepStrictEqual(errors, ["token_expired"]);
  await clock.advance(2500);
  await flush();
  assert.equal(WS.instances.length, 2);
  assert.deepStrictEqual(WS.last().protocols, [`bearer.${mint.last()}`]);
  assert.equal(mint.issued.length, 2);
});

test("a provider failing on connect is a failed attempt: backoff, and no socket without a token", async () => {
  const clock = newClock();
  let fail = true;
  const provider = async () => {
    if (fail) throw new Error("down");
    return fakeJWT({ exp: T0 / 1000 + 3600 });
  };
  const { WS, statuses } = setup(provider, { clock, backoff: { initialSpreadMs: 1000 } });
  await flush();
  assert.equal(WS.instances.length, 0);
  assert.equal(statuses.at(-1), "reconnecting 500");
  await clock.advance(500);
  await flush();
  assert.equal(statuses.at(-1), "reconnecting 500");
  fail = false;
  await clock.advance(500);
  await flush();
  assert.equal(WS.instances.length, 1);
});

test("an auth answered unauthorized is a failed refresh: retried with backoff", async () => {
  const clock = newClock();
  const mint = minter(clock, 60_000);
  const { WS, fetch } = setup(mint, { clock, random: () => 0 });
  await flush();
  const ws = await goLive(WS, fetch);
  await clock.advance(30_000);
  assert.equal(ws.ops("auth").length, 1);
  ws.serverSend({ type: "error", code: "unauthorized", message: "token refused" });
  await clock.advance(999);
  assert.equal(ws.ops("auth").length, 1);
  await clock.advance(1); // the 1 s floor
  assert.equal(ws.ops("auth").length, 2);
  assert.equal(mint.issued.length, 3);
  // Accepted this time (no answer): the next refresh counts from the new token's exp,
  // 60 s + 2 s (see minter) after it was minted, less the margin.
  await clock.advance(31_999);
  assert.equal(ws.ops("auth").length, 2);
  await clock.advance(1);
  assert.equal(ws.ops("auth").length, 3);
});
