import type { LineBatch, LogLine } from "../../core/record.js";
import { addRange, cmp, type Pos, posOf, type Ranges } from "./entries.js";

/**
 * After a crash: per input, the line positions already queued or delivered past the checkpoint. The source
 * reads those lines again; they are skipped instead of being queued a second time.
 */
export class RereadFilter {
  private readonly ranges: Ranges = new Map();

  /** Inputs with lines still to skip. */
  get inputs(): number {
    return this.ranges.size;
  }

  add(inputId: string, lo: Pos, hi: Pos): void {
    addRange(this.ranges, inputId, lo, hi);
  }

  /** The batch without the lines already queued; an input is forgotten once its range has been passed. */
  filter(batch: LineBatch): { batch: LineBatch; skipped: number } {
    const r = this.ranges.get(batch.inputId);
    if (!r) return { batch, skipped: 0 };
    const keep: LogLine[] = [];
    let skipped = 0;
    for (const l of batch.lines) {
      const p = posOf(l);
      if (cmp(p, r.lo) >= 0 && cmp(p, r.hi) <= 0) skipped++;
      else keep.push(l);
      if (cmp(p, r.hi) >= 0) this.ranges.delete(batch.inputId);
    }
    if (skipped === 0) return { batch, skipped };
    return { batch: { ...batch, lines: keep }, skipped };
  }
}
