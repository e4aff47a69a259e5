import { test } from "node:test";
import assert from "node:assert/strict";
import { mergePatch } from "./crease-client.js";

// RFC 7396, Appendix A, every row: [original, patch, result].
const appendixA = [
  [{ a: "b" }, { a: "c" }, { a: "c" }],
  [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
  [{ a: "b" }, { a: null }, {}],
  [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
  [{ a: ["b"] }, { a: "c" }, { a: "c" }],
  [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
  [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
  [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
  [["a", "b"], ["c", "d"], ["c", "d"]],
  [{ a: "b" }, ["c"], ["c"]],
  [{ a: "foo" }, null, null],
  [{ a: "foo" }, "bar", "bar"],
  [{ e: null }, { a: 1 }, { e: null, a: 1 }],
  [[1, 2], { a: "b", c: null }, { a: "b" }],
  [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
];

for (const [i, [original, patch, result]] of appendixA.entries()) {
  test(`RFC 7396 appendix A row ${i + 1}: ${JSON.stringify(original)} + ${JSON.stringify(patch)}`, () => {
    assert.deepStrictEqual(mergePatch(structuredClone(original), structuredClone(patch)), result);
  });
}

test("RFC 7396 section 3 example", () => {
  const target = {
    title: "Goodbye!",
    author: { givenName: "John", familyName: "Doe" },
    tags: ["example", "sample"],
    content: "This will be unchanged",
  };
  const patch = { title: "Hello!", phoneNumber: "+01-123-456-7890", author: { familyName: null }, tags: ["example"] };
  assert.deepStrictEqual(mergePatch(target, patch), {
    title: "Hello!",
    author: { givenName: "John" },
    tags: ["example"],
    content: "This will be unchanged",
    phoneNumber: "+01-123-456-7890",
  });
});

test("mergePatch leaves the target untouched and shares unpatched branches", () => {
  const target = { score: { runs: 1, wickets: 0 }, innings: { 1: { runs: 1 } } };
  const before = structuredClone(target);
  const out = mergePatch(target, { score: { runs: 5 } });
  assert.deepStrictEqual(target, before);
  assert.deepStrictEqual(out.score, { runs: 5, wickets: 0 });
  assert.equal(out.innings, target.innings);
});

test("mergePatch treats __proto__ as an ordinary key", () => {
  const patch = JSON.parse('{"__proto__":{"polluted":true}}');
  const out = mergePatch({}, patch);
  assert.equal({}.polluted, undefined);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepStrictEqual(Object.keys(out), ["__proto__"]);
});

test("mergePatch applies a cricket delta", () => {
  const state = { score: { runs: 158, wickets: 6 }, over: "19.5", last6: ["1", "4", "W", "0", "1wd", "2"], result: null };
  const out = mergePatch(state, { score: { runs: 160 }, over: "19.6", last6: ["4", "W", "0", "1wd", "2", "2"], result: "India won by 4 wickets" });
  assert.deepStrictEqual(out, { score: { runs: 160, wickets: 6 }, over: "19.6", last6: ["4", "W", "0", "1wd", "2", "2"], result: "India won by 4 wickets" });
});
