import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { replay } from "../src/stub.js";

function recorder() {
  const calls = [];
  const api = {};
  for (const m of ["page", "track", "identify", "group", "consent", "reset", "flush"]) {
    api[m] = (...args) => calls.push([m, ...args]);
  }
  return { api, calls };
}

test("queued calls are replayed in order; unknown ones are skipped", () => {
  const { api, calls } = recorder();
  replay([["consent", { marketing: true }], ["identify", "u1", { email: "a@b.c" }], ["evil"], null, ["track", "Buy"]], api);
  assert.deepEqual(calls, [
    ["consent", { marketing: true }],
    ["identify", "u1", { email: "a@b.c" }],
    ["track", "Buy"],
  ]);
});

test("nothing queued, nothing replayed", () => {
  const { api, calls } = recorder();
  replay(undefined, api);
  replay({ page() {} }, api);
  assert.deepEqual(calls, []);
});

test("the README's stub snippet queues calls the way replay reads them", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const snippet = readme.match(/<script>\n([\s\S]*?)\n<\/script>/)[1];
  const window = {};
  new Function("window", snippet)(window);
  window.datafly.track("Early", { a: 1 });
  window.datafly.consent({ marketing: true });
  assert.equal(window._df, window.datafly);
  const { api, calls } = recorder();
  replay(window.datafly, api);
  assert.deepEqual(calls, [
    ["track", "Early", { a: 1 }],
    ["consent", { marketing: true }],
  ]);
});
