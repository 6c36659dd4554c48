import assert from "node:assert/strict";
import { test } from "node:test";
import { browserContext, campaignFrom, pageContext } from "../src/context.js";
import { fakeWindow } from "./fakes.js";

test("campaign fields come from utm_* parameters", () => {
  assert.deepEqual(
    campaignFrom("?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=a&x=1"),
    { source: "news", medium: "email", name: "spring", term: "shoes", content: "a" },
  );
  assert.deepEqual(campaignFrom("?utm_source=only"), { source: "only" });
});

test("no utm parameters, no campaign", () => {
  assert.equal(campaignFrom(""), undefined);
  assert.equal(campaignFrom("?rclid=abc&utm_source="), undefined);
});

test("the page context keeps the full URL with its query", () => {
  const win = fakeWindow("https://shop.example.com/p/1?rclid=abc#top");
  assert.deepEqual(pageContext(win.location, win.document, "https://ref.example/"), {
    url: "https://shop.example.com/p/1?rclid=abc#top",
    path: "/p/1",
    referrer: "https://ref.example/",
    search: "?rclid=abc",
    title: "Landing",
  });
});

test("browser context: user agent, locale, timezone, screen", () => {
  const ctx = browserContext(fakeWindow());
  assert.equal(ctx.userAgent, "FakeBrowser/1.0");
  assert.equal(ctx.locale, "de-DE");
  assert.equal(typeof ctx.timezone, "string");
  assert.deepEqual(ctx.screen, { width: 1280, height: 800 });
});
