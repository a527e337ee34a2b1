/**
 * Finds the request ID in a log line: JSON fields (`x-request-id`, `request_id`, `requestId`, any case,
 * `-`/`_` interchangeable), `key=value` text, Envoy's default access-log format, or a user regex whose
 * first capture group is the ID.
 */

const JSON_KEYS = new Set(["xrequestid", "requestid", "reqid"]);

/** Normalises a field name: lowercase, without `-`, `_` and `.`. */
function normKey(k: string): string {
  return k.toLowerCase().replace(/[-_.]/g, "");
}

export function requestIdFromObject(obj: Record<string, unknown>): string | undefined {
  for (const [k, v] of Object.entries(obj)) {
    if (JSON_KEYS.has(normKey(k)) && (typeof v === "string" || typeof v === "number") && String(v) !== "") {
      return String(v);
    }
  }
  return undefined;
}

// `x-request-id=abc`, `request_id: "abc"`, `requestId=abc`, `X-Request-ID: abc` (any case).
const KEY_VALUE =
  /(?:x[-_]?request[-_]?id|request[-_]?id|req[-_]?id)["']?\s*[=:]\s*["']?([A-Za-z0-9][A-Za-z0-9._:@/+-]*)/i;

// Envoy's default access log: [START_TIME] "METHOD PATH PROTO" CODE FLAGS RX TX DURATION UPSTREAM_TIME
// "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST" (newer versions append more).
const ENVOY = /^\[[^\]]+\] "[^"]*" \d+ \S+ \d+ \d+ \d+ \S+ "[^"]*" "[^"]*" "([^"]*)"/;

export class RequestIdExtractor {
  private readonly custom: RegExp | undefined;

  constructor(customPattern?: string) {
    this.custom = customPattern ? new RegExp(customPattern) : undefined;
  }

  /** `parsed` is the line's JSON object when it is one (so JSON is parsed only once per line). */
  extract(text: string, parsed?: Record<string, unknown>): string | undefined {
    if (this.custom) {
      const m = this.custom.exec(text);
      if (m) return m[1] ?? m[0];
    }
    if (parsed) {
      const id = requestIdFromObject(parsed);
      if (id !== undefined) return id;
    }
    if (text.charCodeAt(0) === 91 /* [ */) {
      const m = ENVOY.exec(text);
      if (m?.[1] && m[1] !== "-") return m[1];
    }
    const m = KEY_VALUE.exec(text);
    return m?.[1];
  }
}
