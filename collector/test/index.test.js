import assert from "node:assert/strict";
import { test } from "node:test";
import { start } from "../src/index.js";
import { fakeWindow } from "./fakes.js";

globalThis.__VERSION__ = "test";

function page(attributes = {}, win = fakeWindow()) {
  const attrs = Object.assign({ "data-pipeline-key": "dk_test" }, attributes);
  const script = { src: "https://data.shop.example/d.js", getAttribute: (n) => (n in attrs ? attrs[n] : null) };
  const docListeners = [];
  Object.assign(win.document, {
    currentScript: script,
    querySelector: () => script,
    visibilityState: "visible",
    addEventListener: (type, fn) => docListeners.push(fn),
  });
  win.history = { pushState() {}, replaceState() {} };
  win.navigator.sendBeacon = () => true;
  win.fetches = [];
  win.fetch = (url, init) => {
    win.fetches.push({ url, body: JSON.parse(init.body) });
    return Promise.resolve({ status: 200, json: () => Promise.resolve({ success: true }) });
  };
  return win;
}

test("starts, replays the stub, sends the page view to the script's origin", () => {
  const win = page();
  win.datafly = [["track", "Queued"]];
  win._df = win.datafly;
  start(win);
  assert.equal(typeof win.datafly.track, "function");
  assert.equal(win._df, win.datafly);
  win.timers.advance(1000);
  assert.equal(win.fetches.length, 1);
  assert.equal(win.fetches[0].url, "https://data.shop.example/v1/batch?key=dk_test");
  assert.deepEqual(
    win.fetches[0].body.batch.map((e) => e.type),
    ["track", "page"],
  );
  assert.equal(win.fetches[0].body.batch[1].context.library.version, "test");
});

test("data-auto-page=false: no page view", () => {
  const win = page({ "data-auto-page": "false" });
  start(win);
  win.timers.advance(5000);
  assert.equal(win.fetches.length, 0);
});

test("loading twice keeps the first instance", () => {
  const win = page();
  start(win);
  const first = win.datafly;
  start(win);
  assert.equal(win.datafly, first);
});

test("no pipeline key: does nothing and throws nothing", () => {
  const win = page({ "data-pipeline-key": null });
  assert.doesNotThrow(() => start(win));
  assert.equal(win.datafly, undefined);
});
