import { ExternalSorter } from "./external-sort.js";
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
  /**
   * Matching lines in time order (lines without a time last, in store order), streamed: memory stays bounded
   * whatever the store's size.
   */
  logs(filter: LogFilter): AsyncIterable<LogRecord>;
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

/** Sort key of a record's time; records without a (valid) time sort after every timed one. */
export function timeKey(r: LogRecord): number {
  const t = r.time === undefined ? Number.NaN : Date.parse(r.time);
  return Number.isNaN(t) ? Number.MAX_SAFE_INTEGER : t;
}

/** Rough in-memory size of a record, for the sorters' memory budget. */
export function recordBytes(r: LogRecord): number {
  let n = 0;
  for (const v of Object.values(r)) n += typeof v === "string" ? v.length * 2 + 48 : 16;
  return n;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export interface TraceHop {
  cuid: string;
  svc: string;
  pod?: string;
  pod_ip?: string;
  first?: string;
  last?: string;
  /** Number of lines of this hop. */
  count: number;
}

export interface Trace {
  /** In order of each hop's first line. */
  hops: TraceHop[];
  /** Every line, grouped by hop in the order of `hops`, in time order within a hop. */
  lines(): AsyncGenerator<{ hop: number; line: LogRecord }>;
}

/**
 * Every container a request passed through, in order of its first line. `records` must come in time order
 * (as `Store.logs` yields them); the lines are regrouped by hop with an external sort (bounded memory).
 */
export async function traceHops(
  records: AsyncIterable<LogRecord>,
  ledgerOf: (cuids: readonly string[]) => Promise<LedgerEntry[]>,
): Promise<Trace> {
  const rank = new Map<string, number>();
  const hops: TraceHop[] = [];
  const sorter = new ExternalSorter<LogRecord>();
  for await (const r of records) {
    let i = rank.get(r.cuid);
    if (i === undefined) {
      i = hops.length;
      rank.set(r.cuid, i);
      const hop: TraceHop = { cuid: r.cuid, svc: r.svc, count: 0 };
      if (r.pod) hop.pod = r.pod;
      if (r.pod_ip) hop.pod_ip = r.pod_ip;
      hops.push(hop);
    }
    const hop = hops[i]!;
    hop.count++;
    if (r.time) {
      hop.first ??= r.time;
      hop.last = r.time;
    }
    await sorter.add([i], r, recordBytes(r));
  }
  if (hops.some((h) => !h.pod || !h.pod_ip)) {
    const ledger = new Map((await ledgerOf(hops.map((h) => h.cuid))).map((e) => [e.cuid, e]));
    for (const h of hops) {
      const l = ledger.get(h.cuid);
      if (!h.pod && l?.pod) h.pod = l.pod;
      if (!h.pod_ip && l?.pod_ip) h.pod_ip = l.pod_ip;
    }
  }
  return {
    hops,
    async *lines() {
      for await (const line of sorter.sorted()) yield { hop: rank.get(line.cuid)!, line };
    },
  };
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
