import assert from "node:assert/strict";
import { test } from "node:test";
import { COOKIE_NAMES, MAX_COOKIES, MAX_VALUE, vendorCookies } from "../src/cookies.js";
import { createCollector } from "../src/collector.js";
import { createStorage } from "../src/storage.js";
import { fakeTransport, fakeWindow, tick } from "./fakes.js";

const page = (cookie) => ({ cookie });

test("only the allow-listed vendor cookies are read", () => {
  const cookie =
    "session_secret=s3cret; _fbp=fb.1.1700000000000.1234567890; _ga=GA1.1.111.222; " +
    "_ga_ABC123=GS1.1.1700000000.1.0.1700000000.0.0.0; _ttp=tt-abc; PHPSESSID=xyz; _gid=GA1.1.9.9; " +
    "_fbc=fb.1.1700000000000.IwAR; _gcl_aw=GCL.1700000000.Cj0; li_fat_id=lf-1; _ga=GA1.1.other.path";
  assert.deepEqual(vendorCookies(page(cookie)), {
    _fbp: "fb.1.1700000000000.1234567890",
    _ga: "GA1.1.111.222", // the first of two (the most specific path) wins
    _ga_ABC123: "GS1.1.1700000000.1.0.1700000000.0.0.0",
    _ttp: "tt-abc",
    _fbc: "fb.1.1700000000000.IwAR",
    _gcl_aw: "GCL.1700000000.Cj0",
    li_fat_id: "lf-1",
  });
});

test("every listed name is read; values are kept as they are", () => {
  const cookie = COOKIE_NAMES.map((name, i) => `${name}=v${i}%2Ba=b`).join("; ");
  const found = vendorCookies(page(cookie));
  assert.deepEqual(Object.keys(found), COOKIE_NAMES);
  assert.equal(found._fbp, "v0%2Ba=b");
});

test("no cookies, empty values, look-alikes: nothing", () => {
  assert.equal(vendorCookies(page("")), undefined);
  assert.equal(vendorCookies({}), undefined);
  assert.equal(vendorCookies(page("_fbp=; x_fbp=1; _fbp2=2; ga_X=3; __ga_X=4; =5; _fbp")), undefined);
});

test("bounded: values up to 512 characters, at most 30 cookies, prefixed names up to 64", () => {
  const many = Array.from({ length: 40 }, (_, i) => `_ga_C${i}=${i}`).join("; ");
  assert.equal(Object.keys(vendorCookies(page(many))).length, MAX_COOKIES);
  const long = `_fbp=${"x".repeat(MAX_VALUE + 1)}; _ttp=${"y".repeat(MAX_VALUE)}; _ga_${"z".repeat(61)}=1`;
  assert.deepEqual(Object.keys(vendorCookies(page(long))), ["_ttp"]);
});

test("a document whose cookies cannot be read (sandboxed frame) gives none and does not throw", () => {
  const sandboxed = {
    get cookie() {
      throw new Error("SecurityError");
    },
  };
  assert.equal(vendorCookies(sandboxed), undefined);
});

test("every event carries the cookies of the moment in context.cookies", async () => {
  const win = fakeWindow();
  win.document.cookie = "_fbp=fb.1.1.1; other=1";
  const transport = fakeTransport();
  const api = createCollector({ win, base: "https://gw", key: "dk", version: "1", store: createStorage(win), transport });
  api.track("A");
  win.document.cookie = "_fbp=fb.1.1.1; _ttp=t2";
  api.page();
  api.identify("u1");
  win.timers.advance(1000);
  await tick();
  const [a, view, identify] = transport.sent.flat();
  assert.deepEqual(a.context.cookies, { _fbp: "fb.1.1.1" });
  assert.deepEqual(view.context.cookies, { _fbp: "fb.1.1.1", _ttp: "t2" });
  assert.deepEqual(identify.context.cookies, { _fbp: "fb.1.1.1", _ttp: "t2" });
});

test("track and page return the event's messageId; other calls and bad calls return nothing", async () => {
  const win = fakeWindow();
  const transport = fakeTransport();
  const api = createCollector({ win, base: "https://gw", key: "dk", version: "1", store: createStorage(win), transport });
  const trackId = api.track("Order Completed", { order_id: "o1" });
  const pageId = api.page("Home");
  assert.match(trackId, /^[0-9a-f-]{36}$/);
  assert.notEqual(trackId, pageId);
  assert.equal(api.track(""), undefined);
  assert.equal(api.identify("u1"), undefined);
  win.timers.advance(1000);
  await tick();
  const [order, home] = transport.sent.flat();
  assert.equal(order.messageId, trackId);
  assert.equal(home.messageId, pageId);
});

test("track returns the messageId through the wrapper, and undefined when it fails inside", () => {
  const win = fakeWindow();
  const store = createStorage(win);
  const api = createCollector({ win, base: "https://gw", key: "dk", version: "1", store, transport: fakeTransport() });
  let broken = true; // the page's title getter throws once
  Object.defineProperty(win.document, "title", {
    get() {
      if (broken) {
        broken = false;
        throw new Error("boom");
      }
      return "Back";
    },
  });
  assert.equal(api.page(), undefined); // swallowed, nothing thrown into the page
  assert.match(api.track("Still Works"), /^[0-9a-f-]{36}$/);
});
