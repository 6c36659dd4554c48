import assert from "node:assert/strict";
import { test } from "node:test";
import { SESSION_TIMEOUT } from "../src/constants.js";
import { touchSession } from "../src/session.js";

let n = 0;
const newId = () => `s${++n}`;

test("the first visit starts session number 1", () => {
  const s = touchSession(null, 1000, newId);
  assert.equal(s.number, 1);
  assert.equal(s.lastActivity, 1000);
  assert.match(s.id, /^s\d+$/);
});

test("activity within 30 minutes keeps the session and moves lastActivity", () => {
  const first = touchSession(null, 0, newId);
  const later = touchSession(first, SESSION_TIMEOUT, newId);
  assert.deepEqual(later, { id: first.id, number: 1, lastActivity: SESSION_TIMEOUT });
});

test("more than 30 minutes without activity starts session number 2", () => {
  const first = touchSession(null, 0, newId);
  const kept = touchSession(first, 20 * 60 * 1000, newId);
  const next = touchSession(kept, 20 * 60 * 1000 + SESSION_TIMEOUT + 1, newId);
  assert.equal(next.number, 2);
  assert.notEqual(next.id, first.id);
});

test("a clock that goes backwards keeps the session", () => {
  const first = touchSession(null, 5000, newId);
  const back = touchSession(first, 1000, newId);
  assert.equal(back.id, first.id);
  assert.equal(back.lastActivity, 5000);
});

test("garbage in storage starts a fresh session", () => {
  for (const junk of [{}, { id: 3, number: 1 }, { id: "x", number: 0 }, "x", 7]) {
    assert.equal(touchSession(junk, 0, newId).number, 1);
  }
  assert.equal(touchSession({ id: "x", number: 4, lastActivity: "?" }, 0, newId).number, 5);
});
