/**
 * Lines written vs lines tagged. Every app line carries `INFO <svc> seq=<n>` (bench/app/lib.js), so the
 * tagged output of any agent can be checked line by line: each sequence number should appear exactly once,
 * with a CUID tag naming the same service.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

// The whole app line must be there (a line cut by a reader that raced the writer does not count as tagged).
const LINE = /INFO (\S+) seq=(\d+) request_id=\S+ .*? \d{3} \d+\.\d\dms/;
const TAG = /"ikontainer_CUID":"([0-9a-f-]{36})"/;
const TAG_SVC = /"svc":"([^"]*)"/g;

export interface Tally {
  /** seq → times seen with a tag, per service. */
  seen: Map<string, Map<number, number>>;
  /** Lines with a tag but no recognisable app line (cut or merged lines). */
  malformed: number;
  /** Lines of the app without any CUID tag. */
  untagged: number;
  /** Lines whose tag names another service than the line's. */
  wrongSvc: number;
  cuids: Map<string, Set<string>>;
}

export function newTally(): Tally {
  return { seen: new Map(), malformed: 0, untagged: 0, wrongSvc: 0, cuids: new Map() };
}

/** Counts one output line (append format, JSON format, or a record's message plus its svc field). */
export function countLine(t: Tally, line: string, recordSvc?: string, recordCuid?: string): void {
  if (line === "") return;
  const m = LINE.exec(line);
  const cuid = recordCuid ?? TAG.exec(line)?.[1];
  if (!cuid) {
    if (m) t.untagged++;
    return;
  }
  if (!m) {
    t.malformed++;
    return;
  }
  const svc = m[1]!;
  let tagSvc = recordSvc;
  if (tagSvc === undefined) {
    // the agent's svc is the last "svc" key on the line (the app line itself has none)
    for (const s of line.matchAll(TAG_SVC)) tagSvc = s[1];
  }
  if (tagSvc !== undefined && tagSvc !== svc && !tagSvc.startsWith(`${svc}.`)) t.wrongSvc++;
  let perSvc = t.seen.get(svc);
  if (!perSvc) {
    perSvc = new Map();
    t.seen.set(svc, perSvc);
  }
  const seq = Number(m[2]);
  perSvc.set(seq, (perSvc.get(seq) ?? 0) + 1);
  let c = t.cuids.get(svc);
  if (!c) {
    c = new Set();
    t.cuids.set(svc, c);
  }
  c.add(cuid);
}

/** Counts every line of every file under `dir` (the file sink and the paper script write plain files). */
export function tallyDir(dir: string, t: Tally = newTally()): Tally {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return t;
  }
  for (const name of entries) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) tallyDir(p, t);
    else if (st.isFile()) for (const line of readFileSync(p, "utf8").split("\n")) countLine(t, line);
  }
  return t;
}

export interface LineAccount {
  written: number;
  /** Distinct lines that arrived tagged. */
  tagged: number;
  lost: number;
  /** Extra copies beyond the first. */
  duplicates: number;
  malformed: number;
  untagged: number;
  wrongSvc: number;
  /** Distinct CUIDs seen per service (1 expected). */
  cuidsPerSvc: number;
}

/** Compares a tally with what each service says it wrote (sequence numbers 1..written). */
export function account(t: Tally, written: Readonly<Record<string, number>>): LineAccount {
  const a: LineAccount = {
    written: 0,
    tagged: 0,
    lost: 0,
    duplicates: 0,
    malformed: t.malformed,
    untagged: t.untagged,
    wrongSvc: t.wrongSvc,
    cuidsPerSvc: 0,
  };
  for (const [svc, n] of Object.entries(written)) {
    a.written += n;
    const seen = t.seen.get(svc) ?? new Map<number, number>();
    for (let seq = 1; seq <= n; seq++) {
      const c = seen.get(seq) ?? 0;
      if (c === 0) a.lost++;
      else {
        a.tagged++;
        a.duplicates += c - 1;
      }
    }
    a.cuidsPerSvc = Math.max(a.cuidsPerSvc, t.cuids.get(svc)?.size ?? 0);
  }
  return a;
}
