import assert from "node:assert/strict";
import { test } from "node:test";
import { consentContext, mergeConsent, watchTcf } from "../src/consent.js";

test("consent merges into what was given before, booleans only", () => {
  const first = mergeConsent(null, { marketing: true, analytics: "yes" });
  assert.deepEqual(first, { marketing: true });
  assert.deepEqual(mergeConsent(first, { advertising: false, marketing: false }), {
    marketing: false,
    advertising: false,
  });
});

test("no consent information, no context.consent", () => {
  assert.equal(consentContext(null, undefined), undefined);
  assert.deepEqual(consentContext({ marketing: true }, undefined), { canonical: { marketing: true } });
  assert.deepEqual(consentContext(null, "CP123"), { tcf_string: "CP123" });
});

test("the TCF string is taken from __tcfapi when the page has a CMP", () => {
  const seen = [];
  const win = {
    __tcfapi(command, version, callback) {
      assert.equal(command, "addEventListener");
      assert.equal(version, 2);
      callback({ tcString: "CPxyz", eventStatus: "tcloaded" }, true);
      callback({ tcString: "ignored" }, false);
    },
  };
  assert.equal(watchTcf(win, (s) => seen.push(s)), true);
  assert.deepEqual(seen, ["CPxyz"]);
});

test("no CMP, or a CMP that throws, is harmless", () => {
  assert.equal(watchTcf({}, () => {}), false);
  const broken = {
    __tcfapi() {
      throw new Error("broken CMP");
    },
  };
  assert.equal(watchTcf(broken, () => {}), true);
});
