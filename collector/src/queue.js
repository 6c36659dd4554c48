// The local queue: batches events, sends one batch at a time, retries with backoff, hands what
// is left to sendBeacon when the page goes away, and keeps unsent events in storage (bounded)
// so the next page sends them. The gateway ignores a messageId it already accepted, so sending
// an event twice is harmless; losing one is not.
import { BACKOFF_BASE, BACKOFF_MAX, BATCH_SIZE, BATCH_WAIT, QUEUE_MAX } from "./constants.js";
import { RETRY } from "./transport.js";

/**
 * Delay before the next try after `failures` failed ones: exponential, capped, with jitter.
 * @param {number} failures
 * @param {() => number} [random]
 */
export function backoff(failures, random = Math.random) {
  return Math.min(BACKOFF_BASE * 2 ** failures, BACKOFF_MAX) * (0.5 + random() / 2);
}

/**
 * @param {object} o
 * @param {{get(key: string): any, set(key: string, value: any): void}} o.store
 * @param {string} o.key storage key of the unsent events
 * @param {(batch: object[]) => Promise<number>} o.send resolves SENT, RETRY or DROPPED
 * @param {(batch: object[]) => boolean} o.beacon
 * @param {{setTimeout: Function, clearTimeout: Function}} o.timers
 * @param {number} [o.size] events per batch
 * @param {number} [o.wait] ms to wait for a batch to fill
 * @param {number} [o.max] events kept at most
 */
export function createQueue(o) {
  const size = o.size || BATCH_SIZE;
  const wait = o.wait == null ? BATCH_WAIT : o.wait;
  const max = o.max || QUEUE_MAX;
  const stored = o.store.get(o.key);
  let items = Array.isArray(stored) ? stored.filter((e) => e && typeof e == "object") : [];
  let sending = [];
  let timer = 0;
  let failures = 0;

  const save = () => o.store.set(o.key, items);
  const idle = () => items.filter((e) => sending.indexOf(e) < 0);
  const forget = (batch) => {
    items = items.filter((e) => batch.indexOf(e) < 0);
    save();
  };

  function later(ms) {
    if (!timer) {
      timer = o.timers.setTimeout(() => {
        timer = 0;
        flush();
      }, ms);
    }
  }

  function flush() {
    if (sending.length) return; // one request at a time; the next follows its answer
    const batch = (sending = idle().slice(0, size));
    if (!batch.length) return;
    o.send(batch).then((outcome) => {
      sending = [];
      if (outcome == RETRY) {
        later(backoff(failures++));
      } else {
        failures = 0;
        forget(batch);
        if (items.length) flush();
      }
    });
  }

  if (items.length) later(wait);

  return {
    /** Queue one event. */
    push(event) {
      items.push(event);
      if (items.length > max) items = items.slice(items.length - max);
      save();
      if (!failures && idle().length >= size) flush();
      else later(wait);
    },
    flush,
    /** The page is hidden or going away: beacon what is not on its way already. */
    unload() {
      if (failures) return; // offline or throttled: the next page sends them from storage
      for (let batch; (batch = idle().slice(0, size)).length && o.beacon(batch); ) forget(batch);
    },
    /** @returns {object[]} events not yet acknowledged (for tests and debugging) */
    pending: () => items.slice(),
  };
}
