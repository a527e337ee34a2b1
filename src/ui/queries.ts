import type { LedgerEntry } from "../store/ledger.js";
import { mergeStreamsByTime } from "../store/multi.js";
import type { LogFilter, LogRecord, Store, TraceHop, WhoisMatch } from "../store/query.js";
import { collect, traceHops, whois } from "../store/query.js";

/**
 * What the pages ask the store, through the same `Store` interface as `logs`, `trace` and `whois`. Every query
 * passes a limit, so a page holds at most a page of lines (plus the lines that share the cursor's timestamp).
 *
 * Paging is by time, not by offset: a cursor is the time of the last line shown plus how many lines at exactly
 * that time were shown, so page N costs the same as page 1.
 */

export interface Cursor {
  /** ms since epoch of the last line shown */
  t: number;
  /** lines at exactly `t` already shown */
  skip: number;
}

export const formatCursor = (c: Cursor): string => `${c.t}.${c.skip}`;

export function parseCursor(s: string | undefined): Cursor | undefined {
  const m = s === undefined ? null : /^(\d{1,15})\.(\d{1,9})$/.exec(s);
  return m ? { t: Number(m[1]), skip: Number(m[2]) } : undefined;
}

export interface LinesPage {
  lines: LogRecord[];
  /** cursor of the next page, when there is one */
  next?: Cursor;
}

const timeOf = (r: LogRecord): number | undefined => (r.time === undefined ? undefined : Date.parse(r.time));

/**
 * One page of the lines matching any of `filters` (an IP search is one filter per CUID that held it), merged in
 * time order. Lines without a time come last and are only on the first page's tail (a cursor needs a time).
 */
export async function linesPage(
  store: Store,
  filters: readonly LogFilter[],
  size: number,
  cursor?: Cursor,
): Promise<LinesPage> {
  const skip = cursor?.skip ?? 0;
  const want = size + 1 + skip;
  const streams = filters.map((f) => {
    const q: LogFilter = { ...f, limit: want };
    if (cursor) q.since = Math.max(f.since ?? cursor.t, cursor.t);
    return store.logs(q);
  });
  let merged = await collect(mergeStreamsByTime(streams, want));
  if (cursor) {
    // drop the lines at the cursor's time that earlier pages showed
    let dropped = 0;
    merged = merged.filter((r) => !(timeOf(r) === cursor.t && dropped++ < skip));
  }
  const lines = merged.slice(0, size);
  const out: LinesPage = { lines };
  const last = lines[lines.length - 1];
  const lastT = last ? timeOf(last) : undefined;
  if (merged.length > size && lastT !== undefined) {
    const atLast = lines.filter((r) => timeOf(r) === lastT).length;
    out.next = { t: lastT, skip: atLast + (cursor && cursor.t === lastT ? skip : 0) };
  }
  return out;
}

/** The ledger rows of the instances that held `ip`, oldest first, with inferred ends. */
export async function holdersOf(store: Store, ip: string): Promise<WhoisMatch[]> {
  const withIp = store as Store & { ledgerForIp?: (ip: string) => Promise<LedgerEntry[]> };
  const ledger = withIp.ledgerForIp ? await withIp.ledgerForIp(ip) : await store.ledger();
  return whois(ledger, ip);
}

/** The holder of `ip` at `at` (ms) among `holders`. */
export function holderAt(holders: readonly WhoisMatch[], at: number): WhoisMatch | undefined {
  return holders.find(
    (m) => Date.parse(m.started_at) <= at && (m.held_until === undefined || at < Date.parse(m.held_until)),
  );
}

/** A hop of a request's path with its lines (at most the path's line cap in all). */
export interface PathHop extends TraceHop {
  lines: LogRecord[];
}

export interface TraceResult {
  hops: PathHop[];
  /** true when the line cap was reached (the path may go on) */
  truncated: boolean;
}

/** A request's path through the instances, from at most `cap` lines. */
export async function requestPath(
  store: Store,
  requestId: string,
  cap: number,
  range: Pick<LogFilter, "since" | "until"> = {},
): Promise<TraceResult> {
  const recs = await collect(store.logs({ requestId, ...range, limit: cap + 1 }));
  const truncated = recs.length > cap;
  const trace = await traceHops(
    (async function* () {
      yield* recs.slice(0, cap);
    })(),
    (cuids) => store.ledger(cuids),
  );
  const hops: PathHop[] = trace.hops.map((h) => ({ ...h, lines: [] }));
  for await (const { hop, line } of trace.lines()) hops[hop]!.lines.push(line);
  return { hops, truncated };
}

/** The ledger row of one instance, if the ledger knows it. */
export async function instance(store: Store, cuid: string): Promise<LedgerEntry | undefined> {
  return (await store.ledger([cuid])).find((e) => e.cuid === cuid);
}
