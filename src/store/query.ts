import type { LedgerEntry } from "./ledger.js";

/**
 * What the query commands work with, whatever the store (local files or Elasticsearch), and the logic of
 * `trace` and `whois` on top of it.
 */

export interface LogRecord {
  /** ISO timestamp; undefined when the store line carries none (append format without a time in the text). */
  time?: string;
  cuid: string;
  svc: string;
  message: string;
  request_id?: string;
  pod?: string;
  namespace?: string;
  node?: string;
  pod_ip?: string;
  source?: string;
}

export interface LogFilter {
  cuid?: string;
  requestId?: string;
  svc?: string;
  /** ms since epoch, inclusive */
  since?: number;
  /** ms since epoch, exclusive */
  until?: number;
  limit?: number;
}

export interface Store {
  /** Matching lines in time order (lines without a time last, in store order). */
  logs(filter: LogFilter): Promise<LogRecord[]>;
  /** The ledger, or only the entries of `cuids` (a store may use it to fetch less). */
  ledger(cuids?: readonly string[]): Promise<LedgerEntry[]>;
  close(): Promise<void>;
}

export function matches(r: LogRecord, f: LogFilter): boolean {
  if (f.cuid !== undefined && r.cuid !== f.cuid) return false;
  if (f.requestId !== undefined && r.request_id !== f.requestId) return false;
  if (f.svc !== undefined && r.svc !== f.svc) return false;
  if (f.since !== undefined || f.until !== undefined) {
    if (r.time === undefined) return false;
    const t = Date.parse(r.time);
    if (f.since !== undefined && t < f.since) return false;
    if (f.until !== undefined && t >= f.until) return false;
  }
  return true;
}

/** Stable sort by time; records without a time keep their order after the timed ones. */
export function sortByTime(records: LogRecord[]): LogRecord[] {
  return records
    .map((r, i) => ({ r, i, t: r.time === undefined ? Number.POSITIVE_INFINITY : Date.parse(r.time) }))
    .sort((a, b) => a.t - b.t || a.i - b.i)
    .map((x) => x.r);
}

export interface TraceHop {
  cuid: string;
  svc: string;
  pod?: string;
  pod_ip?: string;
  first?: string;
  last?: string;
  lines: LogRecord[];
}

/** Every container a request passed through, in order of its first line, with its lines. */
export function traceHops(records: LogRecord[], ledger: LedgerEntry[]): TraceHop[] {
  const byCuid = new Map<string, TraceHop>();
  const ledgerBy = new Map(ledger.map((e) => [e.cuid, e]));
  for (const r of sortByTime(records)) {
    let hop = byCuid.get(r.cuid);
    if (!hop) {
      const l = ledgerBy.get(r.cuid);
      hop = { cuid: r.cuid, svc: r.svc, lines: [] };
      const pod = r.pod ?? l?.pod;
      const ip = r.pod_ip ?? l?.pod_ip;
      if (pod) hop.pod = pod;
      if (ip) hop.pod_ip = ip;
      byCuid.set(r.cuid, hop);
    }
    hop.lines.push(r);
    if (r.time) {
      hop.first ??= r.time;
      hop.last = r.time;
    }
  }
  return [...byCuid.values()];
}

export interface WhoisMatch extends LedgerEntry {
  /** End of the time this instance held the IP: stopped_at, else the start of the next holder, else open. */
  held_until?: string;
  /** True when there is no clean stop and the end is inferred from the next holder of the IP. */
  end_inferred?: boolean;
}

/** Which CUIDs held `ip` (as pod IP or host IP), optionally at time `at` (ms). Oldest first. */
export function whois(ledger: LedgerEntry[], ip: string, at?: number): WhoisMatch[] {
  const holders = ledger
    .filter((e) => e.pod_ip === ip || (e.pod_ip === undefined && e.host_ip === ip))
    .sort((a, b) => a.started_at.localeCompare(b.started_at));
  const out: WhoisMatch[] = holders.map((e, i) => {
    const m: WhoisMatch = { ...e };
    if (e.stopped_at) m.held_until = e.stopped_at;
    else if (holders[i + 1]) {
      m.held_until = holders[i + 1]!.started_at;
      m.end_inferred = true;
    }
    return m;
  });
  if (at === undefined) return out;
  return out.filter(
    (m) => Date.parse(m.started_at) <= at && (m.held_until === undefined || at < Date.parse(m.held_until)),
  );
}
