import { fstatSync, writeSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { lstat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ERR_SINK, isIkontainerError } from "../core/errors.js";
import type { LineBatch } from "../core/record.js";
import {
  mkdirInside,
  mkdirWithMode,
  OUTPUT_DIR_MODE,
  OUTPUT_FILE_MODE,
  openReadWriteNoFollow,
  symlinkRefused,
} from "../core/safe-fs.js";
import { metrics } from "../observe/metrics.js";
import type { BatchEncoder } from "../transforms/tag.js";
import type { PersistSinkValue, Sink, SinkReceipt } from "./sink.js";

/** Output batches smaller than this are written synchronously (see write). */
const SYNC_WRITE_BYTES = 32 * 1024;

interface Output {
  fh: FileHandle;
  size: number;
  chain: Promise<unknown>;
}

/** Where the sink reports what it notices (the agent's logger). */
export type SinkWarn = (fields: Record<string, unknown>, msg: string) => void;

/**
 * `file:DIR`: one output file per stream at DIR/<path relative to its watched folder> (a stream keeps its
 * output file across rotations). Byte-transparent in `append` format.
 *
 * Exactly once across kill -9: each write returns the output file's new size as a receipt, stored in the same
 * atomic checkpoint as the input offset. At start, every output file is cut back to its checkpointed size, so
 * bytes written after the last checkpoint are removed and then written again from the checkpointed input.
 * A file this sink has not written before gets its current size checkpointed before the first byte goes out.
 * Without a checkpoint (exec mode) it only appends.
 *
 * DIR itself is taken as configured; below it no symlink is followed (a link at an output file or subfolder is
 * refused with IKON_ERR_SYMLINK_REFUSED and that stream waits until it is removed), and what the sink creates
 * gets 0750 (folders) / 0640 (files) whatever the umask. An output file found shorter than what the sink wrote
 * (cut by someone else) is reported (log + ikontainer_errors_total{kind="output_truncated"}) and written on at
 * its new end: the lines cut away are not written again.
 */
export class FileSink implements Sink {
  readonly id: string;
  private readonly dir: string;
  private readonly outputs = new Map<string, Promise<Output>>();
  private committed: Record<string, unknown> = {};
  private persist: PersistSinkValue | undefined;
  private dirMade = false;

  constructor(
    dir: string,
    private readonly encode: BatchEncoder,
    private readonly warn: SinkWarn = () => undefined,
  ) {
    this.dir = resolve(dir);
    this.id = `file:${this.dir}`;
  }

  async recover(state: Readonly<Record<string, unknown>>, persist: PersistSinkValue): Promise<void> {
    this.committed = { ...state };
    this.persist = persist;
  }

  private target(rel: string): string {
    const p = resolve(this.dir, rel);
    if (!p.startsWith(`${this.dir}/`)) throw ERR_SINK(`refusing to write outside ${this.dir}: ${rel}`);
    return p;
  }

  /** Current size of an output file without following a link (-1: missing). */
  private async sizeOf(path: string): Promise<number> {
    const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (!st) return -1;
    if (st.isSymbolicLink()) throw symlinkRefused(path);
    return st.size;
  }

  private cutShort(path: string, expected: number, found: number, when: string): void {
    metrics.errors.inc({ kind: "output_truncated" });
    this.warn(
      {
        path,
        expectedBytes: expected,
        foundBytes: found,
        sink: this.id,
        when,
        effect: "writing on at its new end; the lines cut away are not written again",
      },
      "output file was cut short by someone else",
    );
  }

  private async openOutput(rel: string): Promise<Output> {
    const path = this.target(rel);
    try {
      if (!this.dirMade) this.dirMade = mkdirWithMode(this.dir, OUTPUT_DIR_MODE) || true;
      mkdirInside(this.dir, dirname(path), OUTPUT_DIR_MODE);
      let keep = this.committed[rel] as number | undefined;
      const checkpointed = keep !== undefined;
      if (keep === undefined && !this.persist) keep = Number.MAX_SAFE_INTEGER; // exec mode: append only
      if (keep === undefined) {
        // First time this sink writes this file: its current size goes into the checkpoint before any byte out.
        keep = Math.max(0, await this.sizeOf(path));
        this.committed[rel] = keep;
        await this.persist!(rel, keep);
      }
      const fh = await openReadWriteNoFollow(path, OUTPUT_FILE_MODE);
      const current = (await fh.stat()).size;
      if (current > keep) await fh.truncate(keep);
      if (checkpointed && current < keep)
        this.cutShort(path, keep, current, "while the agent was not running");
      return { fh, size: Math.min(current, keep), chain: Promise.resolve() };
    } catch (e) {
      if (isIkontainerError(e) && e.code === "IKON_ERR_SYMLINK_REFUSED") {
        metrics.errors.inc({ kind: "symlink_refused" });
        throw e;
      }
      throw ERR_SINK(`file sink cannot open ${path}: ${(e as Error).message}`, e);
    }
  }

  private output(rel: string): Promise<Output> {
    let o = this.outputs.get(rel);
    if (!o) {
      o = this.openOutput(rel);
      this.outputs.set(rel, o);
      o.catch(() => this.outputs.delete(rel));
    }
    return o;
  }

  async write(batch: LineBatch): Promise<SinkReceipt> {
    const rel = batch.stream.relPath;
    const out = await this.output(rel);
    const bytes = this.encode(batch);
    // Writes to one output file are serialised; positional writes keep the size we report exact.
    const done = out.chain.then(async () => {
      // Cut short by someone else since our last write: go on at its end (no hole of zero bytes), and say so.
      // fstat is cheap and synchronous here: no thread-pool round trip per batch (nor for the write below).
      const now = fstatSync(out.fh.fd).size;
      if (now < out.size) {
        this.cutShort(this.target(rel), out.size, now, "while the agent was writing it");
        out.size = now;
      }
      let written = 0;
      // A small batch (steady low rate): a synchronous pwrite(2) into the page cache, cheaper than a thread-pool
      // round trip. A big one (catching up): through the thread pool, overlapping with the next read's work.
      while (written < bytes.length) {
        const at = out.size + written;
        written +=
          bytes.length < SYNC_WRITE_BYTES
            ? writeSync(out.fh.fd, bytes, written, bytes.length - written, at)
            : (await out.fh.write(bytes, written, bytes.length - written, at)).bytesWritten;
      }
      out.size += bytes.length;
      return out.size;
    });
    out.chain = done.catch(() => undefined);
    try {
      const size = await done;
      return { key: rel, value: size };
    } catch (e) {
      throw ERR_SINK(`file sink cannot write ${this.target(rel)}: ${(e as Error).message}`, e);
    }
  }

  async close(): Promise<void> {
    for (const o of this.outputs.values()) {
      const out = await o.catch(() => undefined);
      if (!out) continue;
      await out.chain;
      await out.fh.close();
    }
    this.outputs.clear();
  }
}
