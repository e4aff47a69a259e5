import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, reconnectDelay } from "./crease-client.js";

const opts = { base: 500, cap: 30000 };
const top = () => 1 - Number.EPSILON; // the largest value Math.random can return

test("backoffDelay window is min(cap, base*2^attempt)", () => {
  const windows = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  for (const [attempt, w] of windows.entries()) {
    assert.equal(backoffDelay(attempt, opts, () => 0), 0, `attempt ${attempt} low end`);
    assert.equal(backoffDelay(attempt, opts, top), w - 1, `attempt ${attempt} high end`);
  }
  assert.equal(backoffDelay(60, opts, top), 29999, "huge attempts stay capped");
});

test("backoffDelay is full jitter: delay = random * window", () => {
  for (const r of [0, 0.1, 0.25, 0.5, 0.9]) {
    assert.equal(backoffDelay(3, opts, () => r), Math.floor(r * 4000));
  }
});

test("backoffDelay draws across the whole window with Math.random", () => {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < 2000; i++) {
    const d = backoffDelay(5, opts);
    assert.ok(d >= 0 && d < 16000, `${d} outside [0, 16000)`);
    min = Math.min(min, d);
    max = Math.max(max, d);
  }
  // Full jitter, not "half" or "equal" jitter: both ends of the window are reached.
  assert.ok(min < 1600 && max > 14400, `spread ${min}..${max} too narrow`);
});

test("reconnectDelay starts from a 0-5 s spread and never narrows below it", () => {
  const o = { ...opts, initialSpreadMs: 5000 };
  assert.equal(reconnectDelay(0, o, () => 0), 0);
  assert.equal(reconnectDelay(0, o, top), 4999);
  assert.equal(reconnectDelay(0, o, () => 0.5), 2500);
  const windows = [5000, 5000, 5000, 5000, 8000, 16000, 30000, 30000];
  for (const [attempt, w] of windows.entries()) {
    assert.equal(reconnectDelay(attempt, o, top), w - 1, `attempt ${attempt}`);
  }
});

test("reconnectDelay honours a custom spread and cap", () => {
  assert.equal(reconnectDelay(0, { base: 100, cap: 2000, initialSpreadMs: 0 }, top), 99);
  assert.equal(reconnectDelay(0, { base: 100, cap: 2000, initialSpreadMs: 10000 }, top), 1999);
});
