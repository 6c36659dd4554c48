// Calls a page made through the inline stub before this file loaded: [[method, ...args], ...].
import { METHODS } from "./constants.js";

/**
 * Replay queued calls in order; anything that is not a known call is skipped.
 * @param {unknown} queued the stub (an array of calls) or anything else
 * @param {Record<string, Function>} api
 */
export function replay(queued, api) {
  if (!Array.isArray(queued)) return;
  for (const call of queued) {
    const args = call && typeof call == "object" ? Array.prototype.slice.call(call) : [];
    if (METHODS.indexOf(args[0]) >= 0) api[args[0]].apply(api, args.slice(1));
  }
}
