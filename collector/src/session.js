// Sessions: a pure function of the stored session and the clock.
import { SESSION_TIMEOUT } from "./constants.js";

/**
 * The session an event at `now` belongs to. A new one starts on the first visit and after
 * `timeout` ms without activity; `number` counts the visitor's sessions from 1.
 *
 * @param {{id: string, number: number, lastActivity: number} | null} previous
 * @param {number} now milliseconds since the epoch
 * @param {() => string} newId
 * @param {number} [timeout]
 * @returns {{id: string, number: number, lastActivity: number}}
 */
export function touchSession(previous, now, newId, timeout = SESSION_TIMEOUT) {
  const valid = previous && typeof previous.id == "string" && previous.number > 0;
  if (valid && now - previous.lastActivity <= timeout) {
    return { id: previous.id, number: previous.number, lastActivity: Math.max(now, previous.lastActivity) };
  }
  return { id: newId(), number: (valid ? previous.number : 0) + 1, lastActivity: now };
}
