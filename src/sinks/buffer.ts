import { createHash } from "node:crypto";
import { type FileHandle, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ERR_SINK, ERR_STATE_DIR, errorMessage } from "../core/errors.js";
import type { LineBatch } from "../core/record.js";
import type { Logger } from "../observe/logger.js";
import { silentLogger } from "../observe/logger.js";
import { type DeliveryLog, recordOfRound } from "./buffer/delivery-log.js";
import { type Entry, mergeEntries, posOf, type Round } from "./buffer/entries.js";
import { encodeFrame } from "./buffer/frame.js";
import {
  counterBlocked,
  counterDelivered,
  counterRejections,
  counterRetries,
  counterSkipped,
  gaugeBytes,
  gaugeFull,
} from "./buffer/metrics.js";
import { openQueue } from "./buffer/open-queue.js";
import { RereadFilter } from "./buffer/reread.js";
import { readEntries, resyncSegment } from "./buffer/segment-reader.js";
import { type Segment, segmentName } from "./buffer/segments.js";
import type { Sink, SinkReceipt } from "./sink.js";

export { decodeFrame, encodeFrame } from "./buffer/frame.js";

/**
 * A durable, bounded queue on disk in front of a network sink (Fluent Bit's filesystem buffer idea).
 *
 * `write()` appends the batch to a segment file and fsyncs it (group commit), then resolves: the batch is
 * accepted as soon as it is on disk, so the pipeline's checkpoint moves on while the destination is down.
 * A background sender reads the queue in order, hands it to the inner sink, and only after the inner sink
 * accepted records the new read position in `delivered.log` and deletes finished segments.
 *
 * Bounded: when the undelivered bytes would exceed `maxBytes`, `write()` waits (the pipeline stops reading)
 * instead of dropping. Restart-safe: undelivered entries are sent again after a restart (at-least-once to
 * the inner sink). After `kill -9`, lines whose input offset was not checkpointed are read again by the
 * source; `recover()` learns from the receipts which queue entries those are and skips such lines when they
 * come back, so they are neither lost nor queued twice.
 */

export interface BufferOptions {
  /** Folder of this sink's queue (one folder per sink). */
  dir: string;
  /** Upper bound of undelivered bytes on disk; `write()` waits when it is reached. */
  maxBytes: number;
  /** Segment files roll over at this size. */
  segmentBytes?: number;
  /** Most bytes handed to the inner sink in one round. */
  sendBytes?: number;
  /** Rounds awaiting the inner sink at once (pipelining). */
  inflightRounds?: number;
  /** Retry backoff of the sender. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** How long `close()` keeps delivering before leaving the rest on disk for the next start. */
  drainOnCloseMs?: number;
  /** fdatasync after appends and delivery records (off only for benchmarks of the format itself). */
  fsync?: boolean;
  log?: Logger;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Folder name for a sink id (`fluentd://host:24224` → `fluentd-host-24224-<hash>`). */
export function bufferDirName(sinkId: string): string {
  const safe = sinkId.replace(/[^A-Za-z0-9.-]+/g, "-").slice(0, 60);
  return `${safe}-${createHash("sha256").update(sinkId).digest("hex").slice(0, 8)}`;
}

export class BufferedSink implements Sink {
  readonly id: string;
  private readonly opts: Required<Omit<BufferOptions, "log">>;
  private readonly log: Logger;
  private segments: Segment[] = [];
  private writer: FileHandle | undefined;
  /** Position after the last durable frame. */
  private endPos = 0;
  /** First undelivered position. */
  private cursor = 0;
  /** Bytes of frames waiting to be appended. */
  private reserved = 0;
  private opened: Promise<void> | undefined;
  private pending: Array<{ frame: Buffer; resolve: (end: number) => void; reject: (e: unknown) => void }> =
    [];
  private flushing = false;
  private spaceWaiters: Array<() => void> = [];
  private dataWaiter: (() => void) | undefined;
  private sender: Promise<void> | undefined;
  private closing = false;
  private stopSender = false;
  private deliveryLog: DeliveryLog | undefined;
  /** After a crash: lines already queued or delivered past the checkpoint, skipped when read again. */
  private readonly reread = new RereadFilter();
  private stopWait: (() => void) | undefined;

  constructor(
    readonly inner: Sink,
    options: BufferOptions,
  ) {
    this.id = inner.id;
    this.log = options.log ?? silentLogger;
    this.opts = {
      segmentBytes: 8 * 1024 * 1024,
      sendBytes: 1024 * 1024,
      inflightRounds: 2,
      retryMinMs: 200,
      retryMaxMs: 30_000,
      drainOnCloseMs: 1_000,
      fsync: true,
      ...options,
    } as Required<Omit<BufferOptions, "log">>;
    // Small segments against the bound, so delivered ones are deleted (and space freed) in steps.
    this.opts.segmentBytes = Math.max(
      4096,
      Math.min(this.opts.segmentBytes, Math.floor(this.opts.maxBytes / 8)),
    );
  }

  /** Bytes queued and not yet delivered. */
  get bufferedBytes(): number {
    return this.endPos - this.cursor + this.reserved;
  }

  /** Bytes the queue holds on disk (delivered frames stay until their segment is deleted) plus reservations. */
  private usedBytes(): number {
    return this.endPos - (this.segments[0]?.base ?? this.endPos) + this.reserved;
  }

  private open(): Promise<void> {
    this.opened ??= this.doOpen();
    return this.opened;
  }

  private async doOpen(): Promise<void> {
    const q = await openQueue(this.opts.dir, this.opts.fsync, this.log, this.id);
    this.deliveryLog = q.deliveryLog;
    this.segments = q.segments;
    this.endPos = q.endPos;
    this.cursor = q.cursor;
    gaugeBytes.set({ sink: this.id }, this.bufferedBytes);
  }

  /** The sender starts after recover() (or the first write), so recover() sees a queue that stands still. */
  private startSender(): void {
    this.sender ??= this.runSender();
  }

  /**
   * `state` holds, per input, the queue position after the last entry whose input offset was checkpointed.
   * Entries past it (queued or already delivered) hold lines the source will read again: remember their
   * line ranges so those lines are skipped instead of being queued a second time.
   */
  async recover(state: Readonly<Record<string, unknown>>): Promise<void> {
    await this.open();
    const checkpointed = (inputId: string): number => {
      const v = state[inputId];
      return typeof v === "number" ? v : -1;
    };
    for (const rec of this.deliveryLog?.records ?? []) {
      for (const [inputId, loO, loP, hiO, hiP, end] of rec.d) {
        if (end > checkpointed(inputId)) this.reread.add(inputId, [loO, loP], [hiO, hiP]);
      }
    }
    for await (const e of this.entries(this.cursor, this.endPos)) {
      const lines = e.batch.lines;
      if (lines.length === 0 || e.end <= checkpointed(e.batch.inputId)) continue;
      this.reread.add(e.batch.inputId, posOf(lines[0]!), posOf(lines[lines.length - 1]!));
    }
    this.startSender();
    if (this.reread.inputs > 0)
      this.log.info(
        { sink: this.id, inputs: this.reread.inputs },
        "buffer: lines past the checkpoint are already queued; skipping them when read again",
      );
  }

  private filterReread(batch: LineBatch): LineBatch {
    const { batch: kept, skipped } = this.reread.filter(batch);
    if (skipped > 0) counterSkipped.inc({ sink: this.id }, skipped);
    return kept;
  }

  async write(batch: LineBatch): Promise<SinkReceipt | undefined> {
    if (this.closing) throw ERR_SINK(`${this.id}: buffer is closed`);
    await this.open();
    this.startSender();
    const b = this.filterReread(batch);
    if (b.lines.length === 0) return undefined;
    const frame = encodeFrame(b);
    // Backpressure: wait for the sender to free space (a frame larger than the bound passes when empty).
    const full = () => this.usedBytes() > 0 && this.usedBytes() + frame.length > this.opts.maxBytes;
    if (full()) {
      counterBlocked.inc({ sink: this.id });
      gaugeFull.set({ sink: this.id }, 1);
      while (full()) {
        if (this.closing) throw ERR_SINK(`${this.id}: buffer closed while waiting for space`);
        await new Promise<void>((r) => this.spaceWaiters.push(r));
      }
      gaugeFull.set({ sink: this.id }, 0);
    }
    this.reserved += frame.length;
    const end = await new Promise<number>((resolve, reject) => {
      this.pending.push({ frame, resolve, reject });
      if (!this.flushing) void this.flush();
    });
    return { key: b.inputId, value: end };
  }

  /** Group commit: every frame waiting is written with one writev and one fdatasync. */
  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const group = this.pending;
        this.pending = [];
        try {
          let seg = this.segments[this.segments.length - 1];
          if (!this.writer || !seg || seg.size >= this.opts.segmentBytes) {
            await this.writer?.close();
            const base = this.endPos;
            const path = join(this.opts.dir, segmentName(base));
            if (!seg || seg.size >= this.opts.segmentBytes || seg.base + seg.size !== base) {
              seg = { base, size: 0, path, damaged: [] };
              this.segments.push(seg);
            }
            this.writer = await open(seg.path, "a");
          }
          const frames = group.map((g) => g.frame);
          await this.writer.writev(frames);
          if (this.opts.fsync) await this.writer.datasync();
          for (const g of group) {
            seg.size += g.frame.length;
            this.endPos += g.frame.length;
            this.reserved -= g.frame.length;
            g.resolve(this.endPos);
          }
          gaugeBytes.set({ sink: this.id }, this.bufferedBytes);
          this.dataWaiter?.();
        } catch (e) {
          for (const g of group) {
            this.reserved -= g.frame.length;
            g.reject(
              ERR_STATE_DIR(`${this.id}: cannot append to buffer in ${this.opts.dir}: ${errorMessage(e)}`, e),
            );
          }
          // A failed append may have left a partial frame: start a fresh segment for the next one.
          await this.writer?.close().catch(() => {});
          this.writer = undefined;
          const last = this.segments[this.segments.length - 1];
          if (last)
            await open(last.path, "r+")
              .then(async (fh) => {
                await fh.truncate(last.size);
                await fh.close();
              })
              .catch(() => {});
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Reads entries in [from, to) from the segment files, skipping damaged stretches. */
  private entries(from: number, to: number, maxBytes = Number.POSITIVE_INFINITY): AsyncGenerator<Entry> {
    return readEntries(
      () => this.segments,
      from,
      to,
      maxBytes,
      (seg, off) => resyncSegment(seg, off, this.log, this.id),
    );
  }

  /**
   * Delivers the queue in rounds of up to `sendBytes`, with up to `inflightRounds` rounds awaiting the
   * destination at once (so encoding the next round overlaps the receiver's work on the previous one).
   * Progress is committed strictly in queue order. When a round fails, the rounds after it settle, every
   * entry the destination did accept is remembered (not sent again), and delivery restarts at the cursor.
   */
  private async runSender(): Promise<void> {
    let delay = this.opts.retryMinMs;
    let lastWarn = 0;
    const accepted = new Set<number>(); // entry start positions the destination accepted, not yet committed
    const inflight: Round[] = [];
    let readPos = this.cursor;
    while (!this.stopSender) {
      let readFailed = false;
      while (inflight.length < this.opts.inflightRounds && readPos < this.endPos && !this.stopSender) {
        const entries: Entry[] = [];
        try {
          for await (const e of this.entries(readPos, this.endPos, this.opts.sendBytes)) entries.push(e);
        } catch (e) {
          this.log.error({ sink: this.id, err: errorMessage(e) }, "buffer: cannot read queued entries");
          readFailed = true;
          break;
        }
        if (entries.length === 0) break;
        const end = entries[entries.length - 1]!.end;
        inflight.push({ entries, end, done: this.deliver(entries, accepted) });
        readPos = end;
      }
      const head = inflight[0];
      if (!head) {
        if (readFailed) {
          await this.pause(this.opts.retryMaxMs);
          continue;
        }
        if (this.closing) return;
        await new Promise<void>((r) => {
          this.dataWaiter = r;
        });
        this.dataWaiter = undefined;
        continue;
      }
      const failure = await head.done;
      if (failure === undefined) {
        inflight.shift();
        for (const e of head.entries) accepted.delete(e.start);
        await this.commitRound(head);
        delay = this.opts.retryMinMs;
        continue;
      }
      // Let the later rounds settle (what they got accepted is remembered), then start over at the cursor.
      await Promise.all(inflight.map((r) => r.done));
      inflight.length = 0;
      readPos = this.cursor;
      counterRetries.inc({ sink: this.id });
      if (this.stopSender) return;
      const now = Date.now();
      if (now - lastWarn > 10_000) {
        lastWarn = now;
        this.log.warn(
          { sink: this.id, err: errorMessage(failure), bufferedBytes: this.bufferedBytes, retryInMs: delay },
          "destination did not accept buffered lines; keeping them on disk and retrying",
        );
      }
      await this.pause(delay);
      delay = Math.min(delay * 2, this.opts.retryMaxMs);
    }
  }

  /** Hands a round's entries (those not accepted before) to the destination; resolves with the first failure. */
  private async deliver(entries: Entry[], accepted: Set<number>): Promise<unknown> {
    const groups = mergeEntries(entries.filter((e) => !accepted.has(e.start)));
    const results = await Promise.allSettled(groups.map((g) => this.inner.write(g.batch)));
    let failure: unknown;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") for (const start of groups[i]!.starts) accepted.add(start);
      else {
        counterRejections.inc({ sink: this.id });
        failure ??= r.reason ?? new Error("rejected");
      }
    });
    return failure;
  }

  /** Records a delivered round (durably), moves the cursor, frees space. */
  private async commitRound(round: Round): Promise<void> {
    const { record, lines } = recordOfRound(round);
    try {
      await this.deliveryLog!.append(record);
    } catch (e) {
      this.log.error({ sink: this.id, err: errorMessage(e) }, "buffer: cannot record delivery progress");
    }
    this.cursor = round.end;
    counterDelivered.inc({ sink: this.id }, lines);
    gaugeBytes.set({ sink: this.id }, this.bufferedBytes);
    await this.dropDeliveredSegments();
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.stopWait = undefined;
        resolve();
      }, ms);
      this.stopWait = () => {
        clearTimeout(t);
        this.stopWait = undefined;
        resolve();
      };
    });
  }

  private async dropDeliveredSegments(): Promise<void> {
    while (this.segments.length > 1 && this.segments[1]!.base <= this.cursor) {
      const seg = this.segments.shift()!;
      await unlink(seg.path).catch(() => {});
    }
    // All delivered: retire the segment being appended to as well (the next append starts a new one).
    const last = this.segments[this.segments.length - 1];
    if (this.cursor === this.endPos && last && last.size > 0 && !this.flushing && this.pending.length === 0) {
      const segs = this.segments;
      const w = this.writer;
      this.segments = [];
      this.writer = undefined;
      await w?.close().catch(() => {});
      for (const seg of segs) await unlink(seg.path).catch(() => {});
    }
  }

  /** Resolves when everything queued so far is delivered (tests, clean stops). */
  async drain(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    await this.open();
    this.startSender();
    const until = Date.now() + timeoutMs;
    while (this.cursor < this.endPos || this.pending.length > 0 || this.flushing) {
      if (Date.now() >= until) return false;
      await sleep(20);
    }
    return true;
  }

  async close(): Promise<void> {
    if (!this.opened) {
      await this.inner.close();
      return;
    }
    await this.opened;
    // Every accepted write is already durable; try to hand the rest over before stopping.
    while (this.pending.length > 0 || this.flushing) await sleep(5);
    this.closing = true;
    const drained = await this.drain(this.opts.drainOnCloseMs);
    if (!drained)
      this.log.warn(
        { sink: this.id, bufferedBytes: this.bufferedBytes },
        "buffer: destination not reachable at stop; lines stay on disk for the next start",
      );
    this.stopSender = true;
    this.stopWait?.();
    this.dataWaiter?.();
    for (const w of this.spaceWaiters) w();
    this.spaceWaiters = [];
    await this.inner
      .close()
      .catch((e) =>
        this.log.warn({ sink: this.id, err: errorMessage(e) }, "buffer: inner sink close failed"),
      );
    await this.sender?.catch(() => {});
    await this.writer?.close();
    await this.deliveryLog?.close();
    this.writer = undefined;
  }
}
