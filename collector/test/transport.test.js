import assert from "node:assert/strict";
import { test } from "node:test";
import { DROPPED, RETRY, SENT, classify, createTransport, endpoint, payload } from "../src/transport.js";

const ev = (type) => ({ type, messageId: type });

test("one event goes to its short route, several to /v1/batch, the key in the query", () => {
  const base = "https://data.example";
  assert.equal(endpoint(base, "dk_1", [ev("track")]), "https://data.example/v1/t?key=dk_1");
  assert.equal(endpoint(base, "dk_1", [ev("page")]), "https://data.example/v1/p?key=dk_1");
  assert.equal(endpoint(base, "dk_1", [ev("identify")]), "https://data.example/v1/i?key=dk_1");
  assert.equal(endpoint(base, "dk_1", [ev("group")]), "https://data.example/v1/g?key=dk_1");
  assert.equal(endpoint(base, "a b&c", [ev("page"), ev("track")]), "https://data.example/v1/batch?key=a%20b%26c");
  assert.deepEqual(JSON.parse(payload([ev("page")])), ev("page"));
  assert.deepEqual(JSON.parse(payload([ev("page"), ev("track")])), { batch: [ev("page"), ev("track")] });
});

test("retry on network failure, 429 and 503 only", () => {
  assert.equal(classify(200), SENT);
  assert.equal(classify(0), RETRY);
  assert.equal(classify(429), RETRY);
  assert.equal(classify(503), RETRY);
  for (const status of [400, 401, 413, 404, 500]) assert.equal(classify(status), DROPPED);
});

function fakeFetch(answer) {
  const calls = [];
  const fetch = (url, init) => {
    calls.push({ url, init });
    return typeof answer == "function" ? answer() : Promise.resolve(answer);
  };
  return { calls, fetch };
}

test("send: text/plain body, credentials, keepalive; stores the gateway's anonymousId", async () => {
  const { calls, fetch } = fakeFetch({ status: 200, json: () => Promise.resolve({ success: true, anonymousId: "a1" }) });
  const ids = [];
  const t = createTransport({ fetch }, "https://gw", "dk", (id) => ids.push(id));
  assert.equal(await t.send([ev("track")]), SENT);
  assert.deepEqual(ids, ["a1"]);
  const { url, init } = calls[0];
  assert.equal(url, "https://gw/v1/t?key=dk");
  assert.equal(init.method, "POST");
  assert.equal(init.credentials, "include");
  assert.equal(init.keepalive, true);
  assert.equal(typeof init.body, "string"); // the browser labels it text/plain;charset=UTF-8
  assert.equal(init.headers, undefined); // no custom headers: no preflight
});

test("send: an unreadable answer still counts as sent", async () => {
  const { fetch } = fakeFetch({ status: 200, json: () => Promise.reject(new Error("not json")) });
  assert.equal(await createTransport({ fetch }, "https://gw", "dk", () => {}).send([ev("page")]), SENT);
});

test("send never rejects: network errors and a throwing fetch mean retry", async () => {
  const rejecting = fakeFetch(() => Promise.reject(new TypeError("Failed to fetch")));
  assert.equal(await createTransport(rejecting, "https://gw", "dk", () => {}).send([ev("page")]), RETRY);
  const throwing = {
    fetch() {
      throw new Error("no fetch");
    },
  };
  assert.equal(await createTransport(throwing, "https://gw", "dk", () => {}).send([ev("page")]), RETRY);
  const { fetch } = fakeFetch({ status: 401 });
  assert.equal(await createTransport({ fetch }, "https://gw", "dk", () => {}).send([ev("page")]), DROPPED);
});

test("beacon: a text/plain Blob to the same URL", async () => {
  const beacons = [];
  const win = { navigator: { sendBeacon: (url, body) => beacons.push({ url, body }) > 0 } };
  assert.equal(createTransport(win, "https://gw", "dk", () => {}).beacon([ev("page"), ev("track")]), true);
  assert.equal(beacons[0].url, "https://gw/v1/batch?key=dk");
  assert.equal(beacons[0].body.type, "text/plain");
  assert.deepEqual(JSON.parse(await beacons[0].body.text()).batch.length, 2);
  assert.equal(createTransport({ navigator: {} }, "https://gw", "dk", () => {}).beacon([ev("page")]), false);
});
