// Consent: what the page told us through consent(...), plus the IAB TCF v2 string from a CMP.

/**
 * Merge newly given categories into the stored ones; only boolean values are kept.
 * @param {Record<string, boolean> | null} stored
 * @param {Record<string, unknown>} given
 * @returns {Record<string, boolean>}
 */
export function mergeConsent(stored, given) {
  const merged = Object.assign({}, stored);
  for (const category in given) {
    if (typeof given[category] == "boolean") merged[category] = given[category];
  }
  return merged;
}

/**
 * `context.consent`, or undefined when the page has given none (the gateway then counts the
 * event as not consented).
 * @param {Record<string, boolean> | null} canonical
 * @param {string | undefined} tcfString
 */
export function consentContext(canonical, tcfString) {
  if (!canonical && !tcfString) return undefined;
  const consent = {};
  if (canonical) consent.canonical = canonical;
  if (tcfString) consent.tcf_string = tcfString;
  return consent;
}

/**
 * Listen to the page's TCF v2 CMP (`__tcfapi`), if it has one, calling `onString` with every
 * TC string it reports. Returns whether a CMP was found (so the caller can try again later).
 * @param {Window} win
 * @param {(tcString: string) => void} onString
 * @returns {boolean}
 */
export function watchTcf(win, onString) {
  if (typeof win.__tcfapi != "function") return false;
  try {
    win.__tcfapi("addEventListener", 2, (data, success) => {
      if (success && data && typeof data.tcString == "string" && data.tcString) onString(data.tcString);
    });
  } catch (e) {
    // a broken CMP must not break the page
  }
  return true;
}
