// First-party storage: localStorage when the browser lets us use it, else memory for this page.
// Values are JSON; nothing here ever throws.

/**
 * @param {Window} win
 * @returns {{get(key: string): any, set(key: string, value: any): void, remove(key: string): void}}
 */
export function createStorage(win) {
  const memory = {};
  let local = null;
  try {
    local = win.localStorage;
    local.setItem("_df_t", "1");
    local.removeItem("_df_t");
  } catch (e) {
    local = null;
  }
  return {
    get(key) {
      try {
        const raw = local ? local.getItem(key) : memory[key];
        return raw == null ? null : JSON.parse(raw);
      } catch (e) {
        return null;
      }
    },
    set(key, value) {
      const raw = JSON.stringify(value);
      memory[key] = raw;
      try {
        if (local) local.setItem(key, raw);
      } catch (e) {
        // quota exceeded or storage revoked: keep going with what we have
      }
    },
    remove(key) {
      delete memory[key];
      try {
        if (local) local.removeItem(key);
      } catch (e) {
        // ignored
      }
    },
  };
}
