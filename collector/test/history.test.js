import assert from "node:assert/strict";
import { test } from "node:test";
import { watchHistory } from "../src/history.js";
import { fakeWindow } from "./fakes.js";

test("pushState, replaceState and popstate report URL changes once each", () => {
  const win = fakeWindow("https://shop.example.com/a");
  const calls = [];
  win.history = {
    pushState(state, title, url) {
      win.location = new URL(url, win.location.href);
    },
  };
  win.history.replaceState = win.history.pushState;
  watchHistory(win, (previous) => calls.push([previous, win.location.href]));
  win.history.pushState({}, "", "/b");
  win.timers.advance(0);
  win.history.replaceState({ x: 1 }, "", "/b"); // same URL: not a navigation
  win.timers.advance(0);
  win.location = new URL("https://shop.example.com/a");
  win.dispatch("popstate");
  win.timers.advance(0);
  assert.deepEqual(calls, [
    ["https://shop.example.com/a", "https://shop.example.com/b"],
    ["https://shop.example.com/b", "https://shop.example.com/a"],
  ]);
});
