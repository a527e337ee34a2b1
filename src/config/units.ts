import { ERR_INVALID_SETTING } from "../core/errors.js";

/** The one parser for durations: `250ms`, `5s`, `2m`, `1h`, or a bare number of milliseconds. */
export function parseDuration(value: string | number, setting: string): number {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(value));
  if (!m)
    throw ERR_INVALID_SETTING(
      `invalid ${setting}: expected a duration such as 500ms, 5s or 2m (got "${value}")`,
    );
  const n = Number(m[1]);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  return Math.round(n * mult);
}

/** The one parser for sizes: `512`, `64KiB`, `1MiB`, `2GiB`, `10MB` (powers of 1000 for kB/MB/GB). */
export function parseSize(value: string | number, setting: string): number {
  if (typeof value === "number" && Number.isInteger(value) && value > 0) return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kib|mib|gib|kb|mb|gb|k|m|g)?\s*$/i.exec(String(value));
  const unit = (m?.[2] ?? "b").toLowerCase();
  const mult: Record<string, number> = {
    b: 1,
    k: 1024,
    kib: 1024,
    m: 1024 ** 2,
    mib: 1024 ** 2,
    g: 1024 ** 3,
    gib: 1024 ** 3,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
  };
  const n = m ? Math.floor(Number(m[1]) * (mult[unit] ?? 1)) : Number.NaN;
  if (!Number.isFinite(n) || n <= 0)
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected a size such as 1MiB or 65536 (got "${value}")`);
  return n;
}

/** The one parser for `host:port` (IPv6 as `[::1]:53`). */
export function parseHostPort(
  value: string,
  setting: string,
  defaultPort?: number,
): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(value) ?? /^([^:]+)(?::(\d+))?$/.exec(value);
  const port = m?.[2] !== undefined ? Number(m[2]) : defaultPort;
  if (!m?.[1] || port === undefined || !Number.isInteger(port) || port < 0 || port > 65535)
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected HOST:PORT (got "${value}")`);
  return { host: m[1], port };
}

/** The one parser for points in time: ISO 8601 (`2026-11-23T10:00:00Z`, `2026-11-23`), `now`, or a duration ago (`15m`). */
export function parseTime(value: string, setting: string, now: number = Date.now()): number {
  const v = value.trim();
  if (v === "now") return now;
  if (/^\d+(?:\.\d+)?\s*(ms|s|m|h)$/.test(v)) return now - parseDuration(v, setting);
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(/[zZ]|[+-]\d{2}:?\d{2}$/.test(v) || v.length === 10 ? v : `${v}Z`);
    if (!Number.isNaN(t)) return t;
  }
  throw ERR_INVALID_SETTING(
    `invalid ${setting}: expected an ISO time such as 2026-11-23T10:00:00Z, "now", or a duration ago such as 15m (got "${value}")`,
  );
}
