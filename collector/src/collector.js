// The public API behind window.datafly: builds Segment-spec events and queues them.
import {
  ANONYMOUS_ID_KEY,
  CONSENT_KEY,
  LIBRARY_NAME,
  QUEUE_KEY,
  SESSION_KEY,
  USER_ID_KEY,
} from "./constants.js";
import { consentContext, mergeConsent, watchTcf } from "./consent.js";
import { browserContext, campaignFrom, pageContext } from "./context.js";
import { vendorCookies } from "./cookies.js";
import { createQueue } from "./queue.js";
import { touchSession } from "./session.js";
import { createTransport } from "./transport.js";
import { uuid } from "./uuid.js";

const isObject = (value) => value != null && typeof value == "object";

/**
 * @param {object} o
 * @param {Window} o.win
 * @param {string} o.base origin of the gateway
 * @param {string} o.key pipeline key
 * @param {string} o.version library version
 * @param {ReturnType<import("./storage.js").createStorage>} o.store
 * @param {ReturnType<typeof createTransport>} [o.transport] (tests pass their own)
 */
export function createCollector(o) {
  const { win, store } = o;
  const doc = win.document;
  let referrer = doc.referrer;
  let tcfString;
  let tcfWatched = false;
  const transport =
    o.transport || createTransport(win, o.base, o.key, (id) => store.set(ANONYMOUS_ID_KEY, id));

  // The anonymous id is added when a batch leaves, so events queued before the gateway's first
  // answer still get the id it issued. With none stored the gateway's _dfid cookie decides.
  const withId = (batch) => {
    const anonymousId = store.get(ANONYMOUS_ID_KEY);
    if (anonymousId) for (const event of batch) event.anonymousId = event.anonymousId || anonymousId;
    return batch;
  };
  const queue = createQueue({
    store,
    key: QUEUE_KEY,
    send: (batch) => transport.send(withId(batch)),
    beacon: (batch) => transport.beacon(withId(batch)),
    timers: win,
  });

  function record(type, fields) {
    if (!tcfWatched) tcfWatched = watchTcf(win, (s) => (tcfString = s));
    const now = Date.now();
    const session = touchSession(store.get(SESSION_KEY), now, uuid);
    store.set(SESSION_KEY, session);
    const location = win.location;
    const event = Object.assign({ type }, fields, {
      messageId: uuid(),
      timestamp: new Date(now).toISOString(),
      context: Object.assign(browserContext(win), {
        page: pageContext(location, doc, referrer),
        campaign: campaignFrom(location.search),
        session: { id: session.id, number: session.number },
        consent: consentContext(store.get(CONSENT_KEY), tcfString),
        library: { name: LIBRARY_NAME, version: o.version },
        cookies: vendorCookies(doc),
      }),
    });
    const userId = store.get(USER_ID_KEY);
    if (event.userId == null && userId) event.userId = userId;
    queue.push(event);
    return event.messageId;
  }

  const api = {
    /** @returns {string} the event's messageId (a browser pixel's eventID) */
    page(name, properties) {
      if (isObject(name)) [name, properties] = [undefined, name];
      const page = pageContext(win.location, doc, referrer);
      return record("page", { name, properties: Object.assign(page, properties) });
    },
    /** @returns {string | undefined} the event's messageId (a browser pixel's eventID) */
    track(event, properties) {
      if (typeof event == "string" && event)
        return record("track", { event, properties: Object.assign({}, properties) });
    },
    identify(userId, traits) {
      if (isObject(userId)) [userId, traits] = [undefined, userId];
      if (userId != null) store.set(USER_ID_KEY, (userId = String(userId)));
      record("identify", { userId, traits: Object.assign({}, traits) });
    },
    group(groupId, traits) {
      if (groupId != null) record("group", { groupId: String(groupId), traits: Object.assign({}, traits) });
    },
    consent(categories) {
      if (isObject(categories)) store.set(CONSENT_KEY, mergeConsent(store.get(CONSENT_KEY), categories));
    },
    /** Forget the user (on logout): user id, stored anonymous id, session and consent. */
    reset() {
      for (const key of [USER_ID_KEY, ANONYMOUS_ID_KEY, SESSION_KEY, CONSENT_KEY]) store.remove(key);
    },
    flush: queue.flush,
    /** Single-page navigation: the previous URL becomes the referrer of what follows. */
    navigated(previousUrl) {
      referrer = previousUrl;
      api.page();
    },
    unload: queue.unload,
    pending: queue.pending,
  };

  // Nothing we do may throw into the page.
  for (const name in api) {
    const method = api[name];
    api[name] = function () {
      try {
        return method.apply(api, arguments);
      } catch (e) {
        // swallowed on purpose
      }
    };
  }
  return api;
}
