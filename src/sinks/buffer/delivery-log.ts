import { type FileHandle, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { ERR_STATE_DIR, errorMessage } from "../../core/errors.js";
import { addRange, posOf, type Ranges, type Round } from "./entries.js";

/**
 * `delivered.log`: one JSON line per delivered round, fsynced: the queue position delivered up to, and per
 * input the line range the round delivered (for `recover()` after a crash). Rewritten from the recent records
 * when it grows past 1 MiB (write to .tmp, fsync, rename).
 */

export interface DeliveryRecord {
  /** Queue position delivered up to (exclusive). */
  pos: number;
  /** Per input: [inputId, loOffset, loPart, hiOffset, hiPart, entryEnd] of what this round delivered. */
  d: Array<[string, number, number, number, number, number]>;
}

export interface LoadedDeliveryLog {
  records: DeliveryRecord[];
  /** Set when the file held something other than records and a torn last line: why it cannot be trusted. */
  damage?: string;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function isRecord(v: unknown): v is DeliveryRecord {
  const r = v as DeliveryRecord | null;
  return (
    typeof r === "object" &&
    r !== null &&
    isCount(r.pos) &&
    (r.d === undefined || Array.isArray(r.d)) &&
    (r.d ?? []).every(
      (x) => Array.isArray(x) && x.length === 6 && typeof x[0] === "string" && x.slice(1).every(isCount),
    )
  );
}

export class DeliveryLog {
  private fh: FileHandle | undefined;
  private bytes = 0;
  records: DeliveryRecord[] = [];

  constructor(
    private readonly dir: string,
    private readonly fsync: boolean,
  ) {}

  get path(): string {
    return join(this.dir, "delivered.log");
  }

  /** Reads the records. A torn last line (kill -9 mid-write) is dropped quietly: that round is sent again. */
  async load(): Promise<LoadedDeliveryLog> {
    let text = "";
    try {
      text = await readFile(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT")
        throw ERR_STATE_DIR(`cannot read ${this.path}: ${errorMessage(e)}`, e);
    }
    const lines = text.split("\n");
    // without a final newline the last line was being written when the process died
    const tornAt = text.endsWith("\n") ? -1 : lines.length - 1;
    const records: DeliveryRecord[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (!line) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        rec = undefined;
      }
      if (isRecord(rec)) {
        const d = rec.d ?? [];
        records.push({ pos: rec.pos, d });
        continue;
      }
      if (i === tornAt) break; // torn last line
      return {
        records: [],
        damage: `line ${i + 1} is not a delivery record: ${JSON.stringify(line.slice(0, 80))}`,
      };
    }
    this.records = records;
    return { records };
  }

  /** Appends one record durably. */
  async append(rec: DeliveryRecord): Promise<void> {
    this.records.push(rec);
    const line = `${JSON.stringify(rec)}\n`;
    if (!this.fh || this.bytes > 1024 * 1024) {
      await this.rewrite();
      return;
    }
    await this.fh.write(line);
    if (this.fsync) await this.fh.datasync();
    this.bytes += Buffer.byteLength(line);
  }

  /** Keeps the recent records (enough to cover any checkpoint lag) in a fresh file. */
  async rewrite(): Promise<void> {
    this.records = this.records.slice(-2000);
    const tmp = `${this.path}.tmp`;
    const text = this.records.map((r) => `${JSON.stringify(r)}\n`).join("");
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.write(text);
      if (this.fsync) await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    await this.fh?.close();
    this.fh = await open(this.path, "a");
    this.bytes = Buffer.byteLength(text);
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }
}

/** What a delivered round adds to `delivered.log`, and how many lines it delivered. */
export function recordOfRound(round: Round): { record: DeliveryRecord; lines: number } {
  let lines = 0;
  const d: DeliveryRecord["d"] = [];
  const ranges: Ranges = new Map();
  const lastEnd = new Map<string, number>();
  for (const e of round.entries) {
    const ls = e.batch.lines;
    lines += ls.length;
    if (ls.length === 0) continue;
    addRange(ranges, e.batch.inputId, posOf(ls[0]!), posOf(ls[ls.length - 1]!));
    lastEnd.set(e.batch.inputId, e.end);
  }
  for (const [id, r] of ranges) d.push([id, r.lo[0], r.lo[1], r.hi[0], r.hi[1], lastEnd.get(id)!]);
  return { record: { pos: round.end, d }, lines };
}
