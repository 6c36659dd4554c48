import assert from "node:assert/strict";
import { test } from "node:test";
import { ANONYMOUS_ID_KEY, CONSENT_KEY } from "../src/constants.js";
import { createCollector } from "../src/collector.js";
import { createStorage } from "../src/storage.js";
import { fakeTransport, fakeWindow, tick } from "./fakes.js";

function setup(win = fakeWindow(), outcomes) {
  const transport = fakeTransport(outcomes);
  const store = createStorage(win);
  const api = createCollector({ win, base: "https://gw", key: "dk", version: "9.9.9", store, transport });
  const sent = async () => {
    win.timers.advance(1000);
    await tick();
    return transport.sent.flat();
  };
  return { win, api, store, transport, sent };
}

test("events follow the Segment spec with the full context", async () => {
  const { api, sent } = setup();
  api.track("Product Viewed", { sku: "A1" });
  const [event] = await sent();
  assert.equal(event.type, "track");
  assert.equal(event.event, "Product Viewed");
  assert.deepEqual(event.properties, { sku: "A1" });
  assert.match(event.messageId, /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(event.timestamp)));
  const c = event.context;
  assert.equal(c.page.url, "https://shop.example.com/landing?utm_source=news&rclid=abc");
  assert.equal(c.page.search, "?utm_source=news&rclid=abc");
  assert.equal(c.page.path, "/landing");
  assert.equal(c.page.referrer, "https://search.example/");
  assert.equal(c.page.title, "Landing");
  assert.equal(c.userAgent, "FakeBrowser/1.0");
  assert.equal(c.locale, "de-DE");
  assert.deepEqual(c.screen, { width: 1280, height: 800 });
  assert.deepEqual(c.campaign, { source: "news" });
  assert.equal(c.session.number, 1);
  assert.deepEqual(c.library, { name: "datafly.js", version: "9.9.9" });
  assert.equal("consent" in c, false);
  assert.equal(event.anonymousId, undefined); // none stored: the gateway's cookie decides
});

test("page(name?, properties?) carries the page fields as properties", async () => {
  const { api, sent } = setup();
  api.page();
  api.page("Home", { a: 1 });
  api.page({ b: 2 });
  const [plain, named, propsOnly] = await sent();
  assert.equal(plain.type, "page");
  assert.equal(plain.properties.url, "https://shop.example.com/landing?utm_source=news&rclid=abc");
  assert.equal(named.name, "Home");
  assert.equal(named.properties.a, 1);
  assert.equal(propsOnly.name, undefined);
  assert.equal(propsOnly.properties.b, 2);
});

test("identify stores the user id; later events carry it", async () => {
  const { api, sent } = setup();
  api.identify("u-42", { email: "Jane@Example.com" });
  api.track("Order Completed", { revenue: 10 });
  api.group(7, { plan: "pro" });
  const [identify, order, group] = await sent();
  assert.equal(identify.type, "identify");
  assert.equal(identify.userId, "u-42");
  assert.deepEqual(identify.traits, { email: "Jane@Example.com" });
  assert.equal(order.userId, "u-42");
  assert.equal(group.groupId, "7");
  assert.deepEqual(group.traits, { plan: "pro" });
});

test("consent given later applies to later events and persists across pages", async () => {
  const win = fakeWindow();
  const { api, sent } = setup(win);
  api.track("Before");
  api.consent({ marketing: true, advertising: false });
  api.track("After");
  const [before, after] = await sent();
  assert.equal(before.context.consent, undefined);
  assert.deepEqual(after.context.consent, { canonical: { marketing: true, advertising: false } });
  const nextPage = setup(win);
  nextPage.api.track("Next page");
  const [next] = await nextPage.sent();
  assert.deepEqual(next.context.consent.canonical, { marketing: true, advertising: false });
});

test("the TCF string from the page's CMP is carried", async () => {
  const win = fakeWindow();
  win.__tcfapi = (cmd, v, cb) => cb({ tcString: "CPtcf", eventStatus: "tcloaded" }, true);
  const { api, sent } = setup(win);
  api.track("X");
  const [event] = await sent();
  assert.deepEqual(event.context.consent, { tcf_string: "CPtcf" });
});

test("the gateway's anonymous id is kept and sent from then on, also on queued events", async () => {
  const { api, store, transport, win } = setup();
  api.track("First");
  win.timers.advance(1000);
  store.set(ANONYMOUS_ID_KEY, "anon-1"); // as the transport does with the gateway's answer
  await tick();
  api.track("Second");
  win.timers.advance(1000);
  await tick();
  assert.equal(transport.sent[0][0].anonymousId, undefined);
  assert.equal(transport.sent[1][0].anonymousId, "anon-1");
});

test("a new session after 30 minutes without activity", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 1_700_000_000_000 });
  const win = fakeWindow();
  const { api, sent } = setup(win);
  api.page();
  t.mock.timers.tick(29 * 60 * 1000);
  api.track("Still here");
  t.mock.timers.tick(31 * 60 * 1000);
  api.track("Back");
  const [a, b, c] = await sent();
  assert.equal(a.context.session.number, 1);
  assert.equal(b.context.session.id, a.context.session.id);
  assert.equal(c.context.session.number, 2);
  assert.notEqual(c.context.session.id, a.context.session.id);
});

test("reset forgets the user", async () => {
  const { api, store, sent } = setup();
  api.identify("u1");
  api.consent({ marketing: true });
  api.reset();
  assert.equal(store.get(CONSENT_KEY), null);
  api.track("Anonymous again");
  const events = await sent();
  assert.equal(events[1].userId, undefined);
});

test("nothing throws into the page", () => {
  const win = fakeWindow();
  const { api } = setup(win);
  Object.defineProperty(win, "location", {
    get() {
      throw new Error("boom");
    },
  });
  assert.doesNotThrow(() => api.page());
  assert.doesNotThrow(() => api.track());
  assert.doesNotThrow(() => api.identify(null));
  assert.doesNotThrow(() => api.consent("nonsense"));
});

test("SPA navigation: the previous URL becomes the referrer", async () => {
  const win = fakeWindow("https://shop.example.com/a");
  const { api, sent } = setup(win);
  win.location = new URL("https://shop.example.com/b?rclid=z");
  api.navigated("https://shop.example.com/a");
  const [view] = await sent();
  assert.equal(view.type, "page");
  assert.equal(view.context.page.url, "https://shop.example.com/b?rclid=z");
  assert.equal(view.context.page.referrer, "https://shop.example.com/a");
});
