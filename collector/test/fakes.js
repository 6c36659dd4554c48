// Stand-ins for the browser objects the collector touches; no DOM library needed.

export function fakeLocalStorage() {
  const data = new Map();
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k),
  };
}

/** Timers run by hand: `timers.run()` fires every due timer, `timers.advance(ms)` moves the clock. */
export function fakeTimers() {
  let now = 0;
  let next = 1;
  const pending = new Map();
  return {
    pending,
    setTimeout(fn, ms) {
      pending.set(next, { fn, at: now + (ms || 0) });
      return next++;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    advance(ms) {
      now += ms;
      for (const [id, t] of [...pending].sort((a, b) => a[1].at - b[1].at)) {
        if (t.at <= now && pending.has(id)) {
          pending.delete(id);
          t.fn();
        }
      }
    },
  };
}

export function fakeWindow(url = "https://shop.example.com/landing?utm_source=news&rclid=abc") {
  const timers = fakeTimers();
  const listeners = {};
  const location = new URL(url);
  const win = {
    location,
    document: { referrer: "https://search.example/", title: "Landing" },
    navigator: { userAgent: "FakeBrowser/1.0", language: "de-DE" },
    screen: { width: 1280, height: 800 },
    localStorage: fakeLocalStorage(),
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    addEventListener: (type, fn) => (listeners[type] = listeners[type] || []).push(fn),
    dispatch: (type) => (listeners[type] || []).forEach((fn) => fn()),
    timers,
  };
  return win;
}

/** A transport that records batches and answers with the outcomes given (SENT by default). */
export function fakeTransport(outcomes = []) {
  const sent = [];
  const beacons = [];
  return {
    sent,
    beacons,
    beaconWorks: true,
    send(batch) {
      sent.push(JSON.parse(JSON.stringify(batch)));
      return Promise.resolve(outcomes.length ? outcomes.shift() : 0);
    },
    beacon(batch) {
      if (!this.beaconWorks) return false;
      beacons.push(JSON.parse(JSON.stringify(batch)));
      return true;
    },
  };
}

export const tick = () => new Promise((resolve) => setImmediate(resolve));
