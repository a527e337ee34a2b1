import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { ERR_QUERY } from "../core/errors.js";
import { RequestIdExtractor } from "../transforms/request-id.js";
import { parseObject } from "../transforms/tag.js";
import { ExternalSorter } from "./external-sort.js";
import { type LedgerEntry, readLedger } from "./ledger.js";
import { readLines } from "./line-reader.js";
import { type LogFilter, type LogRecord, matches, recordBytes, type Store, timeKey } from "./query.js";

/**
 * The embedded store: what the file sink wrote under `<state-dir>/store/` (mirroring source paths) plus the
 * local CUID ledger. Reads both line formats the agent writes:
 * - json: one structured record per line (`toStructured`: message, ikontainer_CUID, svc, @timestamp, …);
 * - append: the original line followed by the tag `{"ikontainer_CUID":"…","svc":"…"}` (the last such object
 *   on the line). Request ID and time are then taken from the original text, pod fields from the ledger.
 */

const TAG = '{"ikontainer_CUID":';
const requestIds = new RequestIdExtractor();

const ISO = /(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)(Z|[+-]\d{2}:?\d{2})?/;

/** A time from the application's own line: a JSON time field, or an ISO timestamp near the start. */
export function timeOfText(text: string, parsed?: Record<string, unknown>): string | undefined {
  if (parsed) {
    for (const k of ["@timestamp", "timestamp", "time", "ts"]) {
      const v = parsed[k];
      if (typeof v === "number" && Number.isFinite(v)) return new Date(v < 1e12 ? v * 1000 : v).toISOString();
      if (typeof v === "string") {
        const t = Date.parse(v);
        if (!Number.isNaN(t)) return new Date(t).toISOString();
      }
    }
  }
  const m = ISO.exec(text.slice(0, 64));
  if (!m) return undefined;
  const zone = m[3] ?? "Z";
  const t = Date.parse(
    `${m[1]}T${m[2]!.replace(",", ".")}${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`,
  );
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

const str = (v: unknown): string | undefined =>
  typeof v === "string" || typeof v === "number" ? String(v) : undefined;

/** One store line → a record, or undefined for a line the agent did not stamp. */
export function parseStoreLine(line: string, source?: string): LogRecord | undefined {
  const whole = parseObject(line);
  if (whole && typeof whole.ikontainer_CUID === "string") {
    const r: LogRecord = {
      cuid: whole.ikontainer_CUID,
      svc: str(whole.svc) ?? "",
      message: str(whole.message) ?? "",
    };
    const fields = ["request_id", "pod", "namespace", "node", "pod_ip", "source"] as const;
    for (const f of fields) {
      const v = str(whole[f]);
      if (v !== undefined) r[f] = v;
    }
    const t = str(whole["@timestamp"]);
    if (t) r.time = t;
    return r;
  }
  const at = line.lastIndexOf(TAG);
  if (at < 0) return undefined;
  const tag = parseObject(line.slice(at));
  if (!tag || typeof tag.ikontainer_CUID !== "string") return undefined;
  const message = line.slice(0, at);
  const parsed = parseObject(message);
  const r: LogRecord = { cuid: tag.ikontainer_CUID, svc: str(tag.svc) ?? "", message };
  const rid = requestIds.extract(message, parsed);
  if (rid !== undefined) r.request_id = rid;
  const t = timeOfText(message, parsed);
  if (t) r.time = t;
  if (source) r.source = source;
  return r;
}

function* walk(dir: string): Generator<string> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names.sort()) {
    const p = join(dir, n);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) yield* walk(p);
    else if (st.isFile()) yield p;
  }
}

export class LocalStore implements Store {
  constructor(
    private readonly storeDirs: readonly string[],
    private readonly stateDir: string,
  ) {
    const missing = storeDirs.filter((d) => !existsSync(d));
    if (missing.length === storeDirs.length && !existsSync(join(stateDir, "ledger.jsonl")))
      throw ERR_QUERY(
        `no local store at ${storeDirs.join(", ")}: pass --state-dir of an agent that has run, --store DIR, or --es URL`,
      );
  }

  async ledger(): Promise<LedgerEntry[]> {
    return readLedger(this.stateDir);
  }

  /**
   * Streams the matches in time order: each store file is read line by line, matches go through an external
   * sort (memory bounded by its budget, the rest spilled to temporary files), and at most `limit` come out.
   */
  async *logs(filter: LogFilter): AsyncGenerator<LogRecord> {
    const ledger = new Map((await this.ledger()).map((e) => [e.cuid, e]));
    // cheap pre-filter: a matching line contains the searched values verbatim
    const needles = [filter.cuid, filter.requestId].filter((x): x is string => x !== undefined);
    const sorter = new ExternalSorter<LogRecord>();
    for (const dir of this.storeDirs) {
      for (const file of walk(dir)) {
        for await (const line of readLines(file)) {
          if (needles.length > 0 && !needles.every((n) => line.includes(n))) continue;
          const r = parseStoreLine(line, file);
          if (!r) continue;
          const l = ledger.get(r.cuid);
          if (l) {
            r.pod ??= l.pod;
            r.namespace ??= l.namespace;
            r.node ??= l.node;
            r.pod_ip ??= l.pod_ip;
            for (const k of ["pod", "namespace", "node", "pod_ip"] as const)
              if (r[k] === undefined) delete r[k];
          }
          if (matches(r, filter)) await sorter.add([timeKey(r)], r, recordBytes(r));
        }
      }
    }
    let left = filter.limit ?? Number.POSITIVE_INFINITY;
    for await (const r of sorter.sorted()) {
      if (left-- <= 0) return; // returning ends sorted() too, which removes its temporary files
      yield r;
    }
  }

  async close(): Promise<void> {}
}
