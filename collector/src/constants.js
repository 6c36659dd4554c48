// Every storage key name and tuning figure of the collector, in one place.

/** localStorage keys (first-party, on the page's origin). */
export const ANONYMOUS_ID_KEY = "_df_aid";
export const USER_ID_KEY = "_df_uid";
export const SESSION_KEY = "_df_ses";
export const CONSENT_KEY = "_df_con";
export const QUEUE_KEY = "_df_q";

/** A new session starts after this long without activity (ms). */
export const SESSION_TIMEOUT = 30 * 60 * 1000;
/** A batch is sent once it holds this many events... */
export const BATCH_SIZE = 10;
/** ...or this long (ms) after its first event. */
export const BATCH_WAIT = 1000;
/** Unsent events kept (oldest dropped first). */
export const QUEUE_MAX = 100;
/** Retry backoff: first delay and ceiling (ms). */
export const BACKOFF_BASE = 1000;
export const BACKOFF_MAX = 60000;

export const LIBRARY_NAME = "datafly.js";
/** The stub methods a page may call before the file has loaded. */
export const METHODS = ["page", "track", "identify", "group", "consent", "reset", "flush"];
