// What every event says about where it happened: page, browser and campaign.

const UTM = { source: "utm_source", medium: "utm_medium", name: "utm_campaign", term: "utm_term", content: "utm_content" };

/**
 * `context.campaign` from the utm_* parameters of a query string, or undefined when it has none.
 * @param {string} search e.g. "?utm_source=news&rclid=abc"
 * @returns {Record<string, string> | undefined}
 */
export function campaignFrom(search) {
  const query = new URLSearchParams(search);
  let campaign;
  for (const field in UTM) {
    const value = query.get(UTM[field]);
    if (value) (campaign = campaign || {})[field] = value;
  }
  return campaign;
}

/**
 * `context.page`: the full URL (with its query, so click ids travel), path, referrer, search, title.
 * @param {Location} location
 * @param {Document} doc
 * @param {string} referrer
 */
export function pageContext(location, doc, referrer) {
  return {
    url: location.href,
    path: location.pathname,
    referrer,
    search: location.search,
    title: doc.title,
  };
}

/**
 * The browser part of the context: user agent, locale, timezone, screen.
 * @param {Window} win
 */
export function browserContext(win) {
  const nav = win.navigator;
  let timezone;
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    // very old browsers: leave it out
  }
  return {
    userAgent: nav.userAgent,
    locale: nav.language,
    timezone,
    screen: { width: win.screen.width, height: win.screen.height },
  };
}
