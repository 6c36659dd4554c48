// Entry point of d.js: find our script tag, start the collector, replay the stub's calls,
// send the page view, watch single-page navigation and the page going away.
import { createCollector } from "./collector.js";
import { createStorage } from "./storage.js";
import { watchHistory } from "./history.js";
import { replay } from "./stub.js";

/* global __VERSION__ */

/**
 * @param {Window} win
 */
export function start(win) {
  const doc = win.document;
  const existing = win.datafly;
  if (existing && existing.loaded) return; // the tag is on the page twice
  const script = doc.currentScript || doc.querySelector("script[data-pipeline-key]");
  const key = script && script.getAttribute("data-pipeline-key");
  if (!key) return;
  const attribute = (name) => script.getAttribute("data-" + name);

  const api = createCollector({
    win,
    base: new URL(script.src, win.location.href).origin,
    key,
    version: __VERSION__,
    store: createStorage(win),
  });
  api.loaded = true;
  const queuedAlias = win._df;
  win.datafly = win._df = api;
  replay(existing, api);
  if (queuedAlias !== existing) replay(queuedAlias, api);

  if (attribute("auto-page") != "false") api.page();
  if (attribute("spa") == "true") watchHistory(win, api.navigated);

  win.addEventListener("pagehide", api.unload);
  doc.addEventListener("visibilitychange", () => doc.visibilityState == "hidden" && api.unload());
  win.addEventListener("online", api.flush);
}

try {
  start(window);
} catch (e) {
  // never throw into the page
}
