// Talking to the gateway: fetch with keepalive while the page lives, sendBeacon when it goes away.
// No custom headers and a text/plain body, so the browser sends no CORS preflight.

/** What became of a batch. */
export const SENT = 0;
export const RETRY = 1;
export const DROPPED = 2;

const PATHS = { track: "t", page: "p", identify: "i", group: "g" };

/**
 * The URL for a batch: one event goes to /v1/t, /v1/p, /v1/i or /v1/g, several to /v1/batch.
 * @param {string} base origin of the gateway, e.g. "https://data.shop.example.com"
 * @param {string} key pipeline key
 * @param {object[]} batch
 */
export function endpoint(base, key, batch) {
  const path = (batch.length == 1 && PATHS[batch[0].type]) || "batch";
  return base + "/v1/" + path + "?key=" + encodeURIComponent(key);
}

/** @param {object[]} batch */
export function payload(batch) {
  return JSON.stringify(batch.length == 1 ? batch[0] : { batch });
}

/**
 * Retry on 429 and 503 (and network failure, status 0); never on 400, 401, 413 or other answers.
 * @param {number} status
 */
export function classify(status) {
  if (status >= 200 && status < 300) return SENT;
  return status == 429 || status == 503 || !status ? RETRY : DROPPED;
}

/**
 * @param {Window} win
 * @param {string} base
 * @param {string} key
 * @param {(anonymousId: string) => void} onAnonymousId called with the id the gateway used
 */
export function createTransport(win, base, key, onAnonymousId) {
  return {
    /** @returns {Promise<number>} SENT, RETRY or DROPPED; never rejects */
    send(batch) {
      try {
        return win
          .fetch(endpoint(base, key, batch), {
            method: "POST",
            body: payload(batch),
            credentials: "include",
            keepalive: true,
          })
          .then(
            (response) => {
              const outcome = classify(response.status);
              if (outcome == SENT) {
                return response.json().then(
                  (answer) => {
                    if (answer && typeof answer.anonymousId == "string") onAnonymousId(answer.anonymousId);
                    return SENT;
                  },
                  () => SENT,
                );
              }
              return outcome;
            },
            () => RETRY,
          );
      } catch (e) {
        return Promise.resolve(RETRY);
      }
    },
    /** @returns {boolean} whether the browser took the batch */
    beacon(batch) {
      try {
        const body = new Blob([payload(batch)], { type: "text/plain" });
        return win.navigator.sendBeacon(endpoint(base, key, batch), body);
      } catch (e) {
        return false;
      }
    },
  };
}
