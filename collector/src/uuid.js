// UUID v4 for messageId and session ids.

/**
 * @param {Crypto} [c] the Web Crypto object (globalThis.crypto by default)
 * @returns {string}
 */
export function uuid(c = globalThis.crypto) {
  if (c && c.randomUUID) return c.randomUUID(); // secure contexts only
  const bytes = new Uint8Array(16);
  if (c && c.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = (Math.random() * 256) | 0;
  bytes[6] = (bytes[6] & 15) | 64; // version 4
  bytes[8] = (bytes[8] & 63) | 128; // RFC 4122 variant
  let out = "";
  bytes.forEach((b, i) => {
    out += (i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "") + (b + 256).toString(16).slice(1);
  });
  return out;
}
