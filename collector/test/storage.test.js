import assert from "node:assert/strict";
import { test } from "node:test";
import { createStorage } from "../src/storage.js";
import { fakeLocalStorage } from "./fakes.js";

test("values round-trip through localStorage as JSON", () => {
  const localStorage = fakeLocalStorage();
  const store = createStorage({ localStorage });
  store.set("k", { a: 1 });
  assert.equal(localStorage.getItem("k"), '{"a":1}');
  assert.deepEqual(createStorage({ localStorage }).get("k"), { a: 1 });
  store.remove("k");
  assert.equal(store.get("k"), null);
});

test("blocked storage falls back to memory for the page", () => {
  const win = {
    get localStorage() {
      throw new DOMException("denied", "SecurityError");
    },
  };
  const store = createStorage(win);
  store.set("k", "v");
  assert.equal(store.get("k"), "v");
});

test("a full storage never throws", () => {
  const localStorage = fakeLocalStorage();
  const store = createStorage({ localStorage });
  localStorage.setItem = () => {
    throw new DOMException("full", "QuotaExceededError");
  };
  assert.doesNotThrow(() => store.set("k", 1));
});
