import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { test } from "node:test";
import { uuid } from "../src/uuid.js";

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("uses crypto.randomUUID when there is one", () => {
  assert.equal(uuid({ randomUUID: () => "from-crypto" }), "from-crypto");
});

test("falls back to getRandomValues (pages served over plain http)", () => {
  const ids = new Set();
  for (let i = 0; i < 200; i++) ids.add(uuid({ getRandomValues: (b) => webcrypto.getRandomValues(b) }));
  assert.equal(ids.size, 200);
  for (const id of ids) assert.match(id, V4);
});

test("and to Math.random without Web Crypto", () => {
  assert.match(uuid(null), V4);
});
