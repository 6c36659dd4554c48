// Single-page apps: call back when the URL changes through pushState, replaceState or popstate.

/**
 * @param {Window} win
 * @param {(previousUrl: string) => void} onChange
 */
export function watchHistory(win, onChange) {
  let last = win.location.href;
  const check = () => {
    const url = win.location.href;
    if (url != last) {
      const previous = last;
      last = url;
      onChange(previous);
    }
  };
  // Checked a tick later, so the router has had its chance to set the document title.
  const soon = () => win.setTimeout(check, 0);
  for (const method of ["pushState", "replaceState"]) {
    const original = win.history[method];
    win.history[method] = function () {
      const result = original.apply(this, arguments);
      soon();
      return result;
    };
  }
  win.addEventListener("popstate", soon);
}
