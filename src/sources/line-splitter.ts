import type { LogLine } from "../core/record.js";

const NL = 10;
const CR = 13;

/**
 * Cuts a byte stream into lines: split on `\n`, drop one trailing `\r`.
 *
 * A line longer than `maxLineBytes` is emitted as pieces: a piece of exactly `maxLineBytes` each time more than
 * that is pending, then the rest as the final piece. The rule depends only on the bytes, never on how reads
 * were chunked, so a restart from a checkpoint cuts the same pieces at the same offsets (piece ids stay stable).
 *
 * Bytes after the last newline stay pending until more data or `flush()` (rotation, deletion, exit).
 */
export class LineSplitter {
  private pending: Buffer | undefined;
  /** Offset of the first byte not yet emitted (the checkpoint position). */
  private start: number;
  /** Pieces already emitted of the line being read (0 when none). */
  private part: number;

  constructor(
    private readonly maxLineBytes: number,
    offset = 0,
    part = 0,
  ) {
    this.start = offset;
    this.part = part;
  }

  /** Where a restart must resume reading: the first byte of the first line not yet emitted. */
  get offset(): number {
    return this.start;
  }

  get pieces(): number {
    return this.part;
  }

  get pendingBytes(): number {
    return this.pending?.length ?? 0;
  }

  /** Splits `chunk` (the bytes right after everything pushed so far) and returns the lines it completes. */
  push(chunk: Buffer, out: LogLine[] = []): LogLine[] {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    const max = this.maxLineBytes;
    let from = 0;
    for (;;) {
      const nl = buf.indexOf(NL, from);
      if (nl === -1) break;
      let end = nl;
      if (end > from && buf[end - 1] === CR) end--;
      if (end - from > max || this.part > 0) this.pieces_(buf, from, end, out);
      else out.push({ bytes: buf.subarray(from, end), offset: this.start });
      this.start += nl + 1 - from;
      from = nl + 1;
    }
    if (from < buf.length) {
      // Emit max-size pieces while MORE than max is pending, keep the rest.
      while (buf.length - from > max) {
        out.push({
          bytes: buf.subarray(from, from + max),
          offset: this.start,
          part: ++this.part,
          partial: true,
        });
        this.start += max;
        from += max;
      }
      // Copy: a view would keep the whole read buffer alive while the line waits for its newline.
      if (from < buf.length) this.pending = Buffer.from(buf.subarray(from));
    }
    return out;
  }

  /** Emits the pending unterminated bytes (if any) as a line; used after the linger, at rotation, at exit. */
  flush(out: LogLine[] = []): LogLine[] {
    const p = this.pending;
    if (!p || p.length === 0) {
      if (this.part > 0) {
        // A split line whose last piece ended exactly at EOF: close it with an empty final piece.
        out.push({ bytes: Buffer.alloc(0), offset: this.start, part: ++this.part, unterminated: true });
        this.part = 0;
      }
      return out;
    }
    this.pending = undefined;
    if (this.part > 0) {
      out.push({ bytes: p, offset: this.start, part: ++this.part, unterminated: true });
      this.part = 0;
    } else out.push({ bytes: p, offset: this.start, unterminated: true });
    this.start += p.length;
    return out;
  }

  /** Forgets pending bytes and restarts at `offset` (copytruncate). Call flush() first to keep them. */
  reset(offset: number): void {
    this.pending = undefined;
    this.start = offset;
    this.part = 0;
  }

  /** Pieces of an over-long line whose newline has arrived: max-size pieces, then the final rest. */
  private pieces_(buf: Buffer, from: number, end: number, out: LogLine[]): void {
    const max = this.maxLineBytes;
    let off = this.start;
    while (end - from > max) {
      out.push({ bytes: buf.subarray(from, from + max), offset: off, part: ++this.part, partial: true });
      from += max;
      off += max;
    }
    out.push({ bytes: buf.subarray(from, end), offset: off, part: ++this.part });
    this.part = 0;
  }
}
