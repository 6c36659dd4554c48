// The site's own vendor cookies that the ad platforms match on (`context.cookies`), read from
// document.cookie. Only these names (and `_ga_<container>`) are read, never any other cookie.
// Keep in step with COOKIE_NAMES / COOKIE_PREFIXES in src/datafly/processing/identity.py
// (tests/collector/test_collector_cookies.py compares them).

export const COOKIE_NAMES = [
  "_fbp",
  "_fbc",
  "_ga",
  "_ttp",
  "_gcl_aw",
  "_gcl_gb",
  "_gcl_dc",
  "_gcl_au",
  "_epik",
  "_scid",
  "_uetmsclkid",
  "li_fat_id",
];
export const COOKIE_PREFIXES = ["_ga_"];
/** At most this many cookies, of at most MAX_VALUE characters each (the server bounds them too). */
export const MAX_COOKIES = 30;
export const MAX_VALUE = 512;

/**
 * The allow-listed cookies of the page as {name: value}, or undefined when there are none.
 * The first of two cookies of the same name wins (the browser lists the most specific path first).
 * @param {Document} doc
 * @returns {Record<string, string> | undefined}
 */
export function vendorCookies(doc) {
  let all;
  try {
    all = doc.cookie; // throws in a sandboxed frame
  } catch (e) {
    return;
  }
  let found;
  let count = 0;
  for (const pair of String(all || "").split(";")) {
    const at = pair.indexOf("=");
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    if (
      value &&
      value.length <= MAX_VALUE &&
      count < MAX_COOKIES &&
      (COOKIE_NAMES.includes(name) ||
        (name.length <= 64 && COOKIE_PREFIXES.some((prefix) => name.startsWith(prefix)))) &&
      !(found && found[name])
    ) {
      (found = found || {})[name] = value;
      count++;
    }
  }
  return found;
}
