import { createHash } from "node:crypto";
import { fstatSync, readSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { LineBatch, LogLine, StreamInfo } from "../../core/record.js";
import { metrics } from "../../observe/metrics.js";
import { LineSplitter } from "../line-splitter.js";
import type { WriteAheadBudget } from "./write-ahead.js";

/** Bytes hashed to tell a reused inode number from the file we were reading. */
export const FINGERPRINT_BYTES = 256;
// 64 KiB, not 256: in a catch-up burst each read's lines stay alive until every sink accepted them, so big
// reads leave big batches for V8 to hold; 64 KiB read a 1,000,000-line backlog at the same rate and CPU with a
// median peak RSS of ~91 instead of ~120 MiB (bench/sidecar-memory.ts). 32 KiB (~82 MiB) cost 20-40% of lines/s:
// each read and each sink write is a thread-pool round trip.
//
// Steady reads are synchronous pread(2)s from the page cache: a few µs each, where a thread-pool round trip
// (fs/promises) costs two thread wake-ups, which dominated the CPU per line at low rates. Catch-up reads stay in
// the thread pool (see drain). The price: a stalled network filesystem stalls the agent's loop.
const MAX_CHUNK = 64 * 1024;
const MIN_CHUNK = 4 * 1024;

export function fingerprint(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex").slice(0, 32);
}

/** Turns raw lines of a file into the lines the pipeline gets (node mode: CRI/Docker decoding). */
export interface LineDecoder {
  /** Decodes complete raw lines; may hold some back (e.g. CRI partial pieces) and return fewer. */
  decode(lines: LogLine[]): LogLine[];
  /** Offset of the first raw byte held back (so the checkpoint never passes it), or undefined. */
  heldFrom(): number | undefined;
  /** Emits whatever is held back (rotation, deletion, exit). */
  flush(): LogLine[];
}

/** `after`: the reader's previous submission; the checkpoint of this batch is recorded only after that one's. */
export type Submit = (batch: LineBatch, reader: FileReader, after?: Promise<void>) => Promise<void>;

/**
 * Reads one file identity (device + inode) from a checkpointed offset to its end, again and again as it grows.
 * The descriptor stays open, so a renamed or deleted file is still read to its end.
 */
export class FileReader {
  private splitter: LineSplitter;
  private readPos: number;
  private running: Promise<void> | undefined;
  private again = false;
  private truncatePending = false;
  private lastWant = 0;
  private lastFull = false;
  /** Set when the file was renamed away or deleted: read to the end, linger, then finish. */
  detachedAt: number | undefined;
  lastGrowth = Date.now();
  finished = false;
  closed = false;
  /**
   * Digest of the first `fpLen` bytes of the content this reader hands on (what the checkpoint records, and what
   * finds a copytruncate copy). Taken from this reader's own reads, or from a mark already matched against the
   * file (checkpoint, copied content): never from a separate later look at the file, which may by then hold the
   * next generation (that mismatch lost the copy and, on the next restart, read it again from 0: issue 16).
   */
  fp: string | undefined;
  fpLen = 0;
  /** The first bytes this reader read itself, contiguous from 0 (the digest grows with them up to 256). */
  private head: Buffer | undefined;
  knownSize = 0;
  /** The file's mtime at the tailer's last look (a poll finding the same size and mtime reads nothing). */
  seenMtimeMs: number | undefined;
  /**
   * Called when the file shrank below what was read (copytruncate), before reading restarts at 0, with the
   * first byte not yet handed on. Resolves true when a copy of the file took over the bytes from there (the
   * copytruncate race closed); false to emit the held partial line (marked) and go on.
   */
  onTruncate: ((from: { offset: number; part: number }) => Promise<boolean>) | undefined;
  /** Reads wait for this first (the rotated predecessor drains to its end before this file's lines go out). */
  gate: Promise<void> | undefined;
  /** A read waiting for its gate or a read slot (the tailer queues at most one per reader). */
  readQueued: Promise<void> | undefined;
  /** A read scheduled after a change event (the tailer's --read-delay). */
  kickTimer: NodeJS.Timeout | undefined;
  /**
   * The agent's budget of read lines handed on before the sinks accepted the earlier ones (undefined: each
   * batch waits for the one before). Set when the sinks take batches out of order: an Elasticsearch sink then
   * gets the next reads while its bulk requests are indexed, instead of one 64 KiB read per round trip.
   */
  writeAhead: WriteAheadBudget | undefined;
  /** Submissions not yet awaited, oldest first. */
  private readonly unanswered: Array<Promise<void>> = [];
  /** The last submission: the next one's checkpoint waits for it, so checkpoints advance in order. */
  private lastSubmitted: Promise<void> | undefined;

  constructor(
    readonly inputId: string,
    readonly stream: StreamInfo,
    private readonly fh: FileHandle,
    offset: number,
    part: number,
    maxLineBytes: number,
    private readonly submit: Submit,
    private readonly decoder?: LineDecoder,
  ) {
    this.splitter = new LineSplitter(maxLineBytes, offset, part);
    this.readPos = offset;
    if (offset === 0) this.head = Buffer.alloc(0);
  }

  /** First byte not yet handed to the sinks (what the checkpoint records). */
  get offset(): number {
    const held = this.decoder?.heldFrom();
    return held === undefined ? this.splitter.offset : Math.min(held, this.splitter.offset);
  }

  get lagBytes(): number {
    return Math.max(0, this.knownSize - this.offset);
  }

  get position(): number {
    return this.readPos;
  }

  /**
   * Starts from a content mark already matched against this file (the checkpoint's, or the copied content's):
   * the digest is never taken again from the file, whose first bytes may have changed since the match.
   */
  setMark(mark: { fp?: string | undefined; fpLen?: number | undefined }): void {
    this.fp = mark.fp;
    this.fpLen = mark.fp ? (mark.fpLen ?? 0) : 0;
  }

  /**
   * A reader started past 0 with no mark (--read-from tail): the digest of the file's first bytes as they are now.
   * With a short mark (the file was shorter than 256 bytes when it was taken), the mark grows only when the
   * file still starts with the marked bytes; else the file was replaced (truncated and written again).
   */
  async updateFingerprint(): Promise<void> {
    if (this.fpLen >= FINGERPRINT_BYTES || this.head) return;
    const buf = Buffer.alloc(FINGERPRINT_BYTES);
    const bytesRead = readSync(this.fh.fd, buf, 0, FINGERPRINT_BYTES, 0);
    if (this.fp && this.fpLen > 0) {
      if (bytesRead < this.fpLen || fingerprint(buf.subarray(0, this.fpLen)) !== this.fp) {
        this.truncatePending = true;
        return;
      }
    }
    const len = Math.min(bytesRead, Math.max(this.readPos, this.fpLen));
    if (len > this.fpLen) {
      this.fp = fingerprint(buf.subarray(0, len));
      this.fpLen = len;
    }
  }

  /** Bytes this reader read at `pos`: those within the first 256 of the file extend the digest. */
  private noteHead(pos: number, bytes: Buffer): void {
    if (!this.head || pos !== this.head.length || pos >= FINGERPRINT_BYTES) return;
    this.head = Buffer.concat([this.head, bytes.subarray(0, FINGERPRINT_BYTES - pos)]);
    this.fp = fingerprint(this.head);
    this.fpLen = this.head.length;
    if (this.fpLen >= FINGERPRINT_BYTES) this.head = undefined;
  }

  /** Schedules a read to the current end; concurrent calls coalesce. */
  kick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.drain().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Copytruncate can go unseen by size: the file truncated and written again past our position before we looked.
   * Its first bytes then differ from those we read: that is a truncation too. One small read per wake-up.
   */
  private async replacedUnderUs(): Promise<boolean> {
    if (!this.fp || this.fpLen === 0 || this.readPos < this.fpLen) return false;
    const buf = Buffer.alloc(this.fpLen);
    const bytesRead = readSync(this.fh.fd, buf, 0, this.fpLen, 0);
    return bytesRead < this.fpLen || fingerprint(buf) !== this.fp;
  }

  private async drain(): Promise<void> {
    try {
      await this.readToEnd();
    } finally {
      // a drain returns only when every batch it read was accepted (callers rely on it: finish, slots, close)
      await this.settle();
    }
  }

  private async readToEnd(): Promise<void> {
    do {
      this.again = false;
      if (!this.detachedAt && (await this.replacedUnderUs())) this.truncatePending = true;
      for (;;) {
        if (this.closed) return;
        if (this.truncatePending) {
          await this.settle(); // the truncation handling needs the offset accepted so far
          await this.restartAtZero();
        }
        // Size reads to what stat said is there: thousands of small files must not each hold a big buffer.
        // A read that filled its buffer doubles the next one (a busy file outgrows the last stat quickly).
        const want = Math.min(
          MAX_CHUNK,
          Math.max(
            MIN_CHUNK,
            this.knownSize - this.readPos + MIN_CHUNK,
            this.lastFull ? this.lastWant * 2 : 0,
          ),
        );
        const buf = Buffer.allocUnsafe(want);
        // Catching up (the last read filled its buffer): a thread-pool read, which overlaps with tagging and
        // writing on the other core; a backlog ran 18% slower with synchronous reads. Else a synchronous one.
        const pooled = this.lastFull;
        const bytesRead = pooled
          ? (await this.fh.read(buf, 0, want, this.readPos)).bytesRead
          : readSync(this.fh.fd, buf, 0, want, this.readPos);
        this.lastWant = want;
        this.lastFull = bytesRead === want;
        if (bytesRead === 0) {
          // At the end: did the file shrink below what we read (copytruncate)? fstat after a 0-byte read is
          // exact for this descriptor; a stat taken before our last read is not.
          const { size } = fstatSync(this.fh.fd);
          if (size < this.readPos) {
            this.truncatePending = true;
            continue;
          }
          break;
        }
        this.noteHead(this.readPos, buf.subarray(0, bytesRead));
        this.readPos += bytesRead;
        if (this.readPos > this.knownSize) this.knownSize = this.readPos;
        this.lastGrowth = Date.now();
        if (this.fpLen < FINGERPRINT_BYTES && !this.head) {
          await this.updateFingerprint();
          if (this.truncatePending) continue; // replaced under us: what was just read is not handed on
        }
        let lines = this.splitter.push(buf.subarray(0, bytesRead));
        if (this.decoder) lines = this.decoder.decode(lines);
        if (lines.length > 0 || this.decoder) await this.emit(lines, false, bytesRead);
        // A short read reached the end as it was: the next change event (or the poll) reads on, and a read
        // that finds nothing there decides truncation. (Reading again now would cost a read and an fstat.)
        if (bytesRead < want) break;
        // A full synchronous read: let timers, signals and other files' events in before going on (the sink may
        // have accepted at once, so nothing else yielded); the next read goes through the thread pool.
        if (!pooled) await nextTurn();
      }
    } while (this.again || this.truncatePending);
  }

  /** `aheadBytes` > 0: the batch may go out before earlier ones were accepted (within the write-ahead budget). */
  private async emit(lines: LogLine[], unterminated = false, aheadBytes = 0): Promise<void> {
    let pieces = 0;
    for (const l of lines) if (l.part !== undefined) pieces++;
    if (pieces) metrics.longLinePieces.inc(pieces);
    if (unterminated) metrics.unterminated.inc(lines.length);
    const batch: LineBatch = {
      stream: this.stream,
      lines,
      inputId: this.inputId,
      endOffset: this.offset,
      endPart: this.splitter.pieces,
      readAt: Date.now(),
    };
    const budget = aheadBytes > 0 && lines.length > 0 ? this.writeAhead : undefined;
    if (!budget) await this.settle();
    const done = this.submit(batch, this, this.lastSubmitted);
    this.lastSubmitted = done;
    this.unanswered.push(done);
    if (!budget) {
      done.catch(() => undefined); // seen by settle(); no unhandled rejection meanwhile
      await this.settle();
      return;
    }
    budget.used += aheadBytes;
    // given back when the sinks accepted (or refused) the batch: until then they hold its lines
    const release = () => {
      budget.used -= aheadBytes;
    };
    done.then(release, release);
    // Over budget (whichever files hold it), this file waits for its own oldest batches; so every file can
    // still read, and the whole agent holds at most the budget plus one batch per file being read.
    while (this.unanswered.length > 0 && budget.exceeded) await this.takeOldest();
  }

  /** Waits until every batch handed on was accepted. */
  private async settle(): Promise<void> {
    while (this.unanswered.length > 0) await this.takeOldest();
  }

  private async takeOldest(): Promise<void> {
    await this.unanswered.shift()!;
  }

  /**
   * Copytruncate: the file shrank below what we read. The restart happens inside the (serialised) read loop:
   * what was pending is emitted, then reading starts again at 0.
   */
  truncated(): Promise<void> {
    this.markTruncated();
    return this.kick();
  }

  /** The next read starts with the truncation handling (e.g. a file found shorter than its checkpoint). */
  markTruncated(): void {
    this.truncatePending = true;
  }

  private async restartAtZero(): Promise<void> {
    this.truncatePending = false;
    const copied = (await this.onTruncate?.({ offset: this.offset, part: this.splitter.pieces })) ?? false;
    // The copy carried the held bytes on (and its own decoder decoded them): drop ours. Without a copy the held
    // partial line is cut for good: it goes out marked partial, never as a complete line.
    if (copied) this.decoder?.flush();
    else await this.flushPending(true);
    this.splitter.reset(0);
    this.readPos = 0;
    this.fp = undefined;
    this.fpLen = 0;
    this.head = Buffer.alloc(0);
    await this.emit([]);
  }

  /** Emits held bytes; `cut`: the file was truncated under them, so they are marked partial (not a whole line). */
  private async flushPending(cut = false): Promise<void> {
    let lines = this.splitter.flush();
    if (this.decoder) lines = [...this.decoder.decode(lines), ...this.decoder.flush()];
    if (cut) lines = lines.map((l) => ({ ...l, partial: true }));
    if (lines.length > 0) await this.emit(lines, true);
  }

  /** Records the current position in the checkpoint (an empty batch), e.g. for a copy adopted at an offset. */
  commitPosition(): Promise<void> {
    return this.emit([]);
  }

  /**
   * After the linger: read what is left, emit the unterminated last line, mark finished. `cut`: the end of this
   * file is where a truncation cut it (a copytruncate copy), so an unterminated last line is marked partial.
   */
  async finish(cut = false): Promise<void> {
    await this.kick();
    await this.flushPending(cut);
    this.finished = true;
    await this.emit([]);
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.running;
    this.closed = true;
    await this.fh.close().catch(() => undefined);
  }
}
