import assert from "node:assert/strict";
import { test } from "node:test";
import { BACKOFF_MAX } from "../src/constants.js";
import { backoff, createQueue } from "../src/queue.js";
import { createStorage } from "../src/storage.js";
import { DROPPED, RETRY, SENT } from "../src/transport.js";
import { fakeTimers, fakeTransport, fakeWindow, tick } from "./fakes.js";

function setup(outcomes, store = createStorage(fakeWindow())) {
  const timers = fakeTimers();
  const transport = fakeTransport(outcomes);
  const queue = createQueue({
    store,
    key: "q",
    send: (b) => transport.send(b),
    beacon: (b) => transport.beacon(b),
    timers,
  });
  return { queue, timers, transport, store };
}
const ev = (i) => ({ type: "track", event: `e${i}`, messageId: `m${i}` });

test("a batch leaves one second after its first event", async () => {
  const { queue, timers, transport } = setup();
  queue.push(ev(1));
  queue.push(ev(2));
  timers.advance(999);
  assert.equal(transport.sent.length, 0);
  timers.advance(1);
  assert.deepEqual(transport.sent, [[ev(1), ev(2)]]);
  await tick();
  assert.deepEqual(queue.pending(), []);
});

test("ten events leave at once, more follow after the answer", async () => {
  const { queue, transport } = setup();
  for (let i = 0; i < 12; i++) queue.push(ev(i));
  assert.equal(transport.sent.length, 1);
  assert.equal(transport.sent[0].length, 10);
  await tick();
  assert.equal(transport.sent.length, 2);
  assert.deepEqual(transport.sent[1], [ev(10), ev(11)]);
  await tick();
  assert.deepEqual(queue.pending(), []);
});

test("network failure, 429 and 503 are retried with backoff; 400/401/413 are not", async () => {
  const { queue, timers, transport } = setup([RETRY, RETRY, SENT]);
  queue.push(ev(1));
  timers.advance(1000);
  await tick();
  assert.equal(transport.sent.length, 1);
  assert.equal(queue.pending().length, 1);
  timers.advance(1000); // first backoff is 0.5-1 s
  await tick();
  assert.equal(transport.sent.length, 2);
  timers.advance(2000);
  await tick();
  assert.equal(transport.sent.length, 3);
  assert.deepEqual(queue.pending(), []);

  const rejected = setup([DROPPED]);
  rejected.queue.push(ev(2));
  rejected.timers.advance(1000);
  await tick();
  rejected.timers.advance(BACKOFF_MAX * 2);
  await tick();
  assert.equal(rejected.transport.sent.length, 1);
  assert.deepEqual(rejected.queue.pending(), []);
});

test("backoff doubles, is capped and jittered", () => {
  assert.equal(backoff(0, () => 1), 1000);
  assert.equal(backoff(3, () => 1), 8000);
  assert.equal(backoff(30, () => 1), BACKOFF_MAX);
  assert.equal(backoff(1, () => 0), 1000);
});

test("the queue is bounded: the oldest events go first", () => {
  const { queue } = setup([RETRY]);
  queue.push(ev(0));
  for (let i = 1; i <= 150; i++) queue.push(ev(i));
  const pending = queue.pending();
  assert.equal(pending.length, 100);
  assert.equal(pending[99].messageId, "m150");
});

test("unsent events survive in storage and the next page sends them", async () => {
  const win = fakeWindow();
  const first = setup([], createStorage(win));
  first.transport.beaconWorks = false;
  first.queue.push(ev(1));
  first.queue.unload(); // beacon refused: kept
  const next = setup([], createStorage(win));
  assert.deepEqual(next.queue.pending(), [ev(1)]);
  next.timers.advance(1000);
  assert.deepEqual(next.transport.sent, [[ev(1)]]);
  await tick();
  assert.deepEqual(createStorage(win).get("q"), []);
});

test("unload beacons what is not in flight and forgets it", async () => {
  const { queue, transport, store } = setup();
  for (let i = 0; i < 13; i++) queue.push(ev(i)); // ten in flight
  queue.unload();
  assert.deepEqual(transport.beacons, [[ev(10), ev(11), ev(12)]]);
  assert.equal(store.get("q").length, 10); // in flight: kept until answered
  await tick();
  assert.deepEqual(queue.pending(), []);
});

test("unload while retrying leaves events for the next page", async () => {
  const { queue, timers, transport } = setup([RETRY]);
  queue.push(ev(1));
  timers.advance(1000);
  await tick();
  queue.push(ev(2));
  queue.unload();
  assert.equal(transport.beacons.length, 0);
  assert.equal(queue.pending().length, 2);
});

test("corrupt storage is ignored", () => {
  const win = fakeWindow();
  win.localStorage.setItem("q", "{not json");
  assert.deepEqual(setup([], createStorage(win)).queue.pending(), []);
  win.localStorage.setItem("q", JSON.stringify([null, 3, ev(1)]));
  assert.deepEqual(setup([], createStorage(win)).queue.pending(), [ev(1)]);
});
