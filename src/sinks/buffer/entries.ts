import type { LineBatch, LogLine } from "../../core/record.js";

/** The queue's entries (one frame each), delivery rounds, and line ranges per input (for crash recovery). */

/** A line's place in its input: (offset, part), part 0 for whole lines. */
export type Pos = [offset: number, part: number];
export const cmp = (a: Pos, b: Pos): number => a[0] - b[0] || a[1] - b[1];
export const posOf = (l: LogLine): Pos => [l.offset, l.part ?? 0];

export interface Entry {
  /** Queue position of the frame's first byte and of the byte after it. */
  start: number;
  end: number;
  batch: LineBatch;
}

export interface Round {
  entries: Entry[];
  /** Queue position after the round's last entry. */
  end: number;
  /** Resolves with the first rejection, or undefined when the destination accepted every entry. */
  done: Promise<unknown>;
}

/** Joins consecutive entries of the same input into one batch (fewer, larger deliveries). */
export function mergeEntries(entries: Entry[]): Array<{ batch: LineBatch; starts: number[] }> {
  const out: Array<{ batch: LineBatch; starts: number[] }> = [];
  for (const { batch, start } of entries) {
    const last = out[out.length - 1];
    if (last && last.batch.inputId === batch.inputId && last.batch.stream.key === batch.stream.key) {
      last.batch.lines.push(...batch.lines);
      last.batch.endOffset = batch.endOffset;
      last.batch.endPart = batch.endPart;
      last.batch.readAt = batch.readAt;
      last.starts.push(start);
    } else out.push({ batch: { ...batch, lines: [...batch.lines] }, starts: [start] });
  }
  return out;
}

/** Range of line positions per input covered by some entries. */
export type Ranges = Map<string, { lo: Pos; hi: Pos }>;
export function addRange(r: Ranges, inputId: string, lo: Pos, hi: Pos): void {
  const cur = r.get(inputId);
  if (!cur) r.set(inputId, { lo, hi });
  else {
    if (cmp(lo, cur.lo) < 0) cur.lo = lo;
    if (cmp(hi, cur.hi) > 0) cur.hi = hi;
  }
}
