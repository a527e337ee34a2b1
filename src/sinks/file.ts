import { type FileHandle, mkdir, open, stat, truncate } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ERR_SINK } from "../core/errors.js";
import type { LineBatch } from "../core/record.js";
import type { BatchEncoder } from "../transforms/tag.js";
import type { PersistSinkValue, Sink, SinkReceipt } from "./sink.js";

interface Output {
  fh: FileHandle;
  size: number;
  chain: Promise<unknown>;
}

/**
 * `file:DIR`: one output file per stream at DIR/<path relative to its watched folder> (a stream keeps its
 * output file across rotations). Byte-transparent in `append` format.
 *
 * Exactly once across kill -9: each write returns the output file's new size as a receipt, stored in the same
 * atomic checkpoint as the input offset. At start, every output file is cut back to its checkpointed size, so
 * bytes written after the last checkpoint are removed and then written again from the checkpointed input.
 * A file this sink has not written before gets its current size checkpointed before the first byte goes out.
 * Without a checkpoint (exec mode) it only appends.
 */
export class FileSink implements Sink {
  readonly id: string;
  private readonly dir: string;
  private readonly outputs = new Map<string, Promise<Output>>();
  private committed: Record<string, unknown> = {};
  private persist: PersistSinkValue | undefined;

  constructor(
    dir: string,
    private readonly encode: BatchEncoder,
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

  private async openOutput(rel: string): Promise<Output> {
    const path = this.target(rel);
    try {
      await mkdir(dirname(path), { recursive: true });
      let keep = this.committed[rel] as number | undefined;
      if (keep === undefined && !this.persist) keep = Number.MAX_SAFE_INTEGER; // exec mode: append only
      if (keep === undefined) {
        // First time this sink writes this file: its current size goes into the checkpoint before any byte out.
        keep = await stat(path).then(
          (s) => s.size,
          () => 0,
        );
        this.committed[rel] = keep;
        await this.persist!(rel, keep);
      }
      const current = await stat(path).then(
        (s) => s.size,
        () => -1,
      );
      if (current > keep) await truncate(path, keep);
      const fh = await open(path, current === -1 ? "w" : "r+");
      const size = current === -1 ? 0 : Math.min(current, keep);
      return { fh, size, chain: Promise.resolve() };
    } catch (e) {
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
      let written = 0;
      while (written < bytes.length) {
        const { bytesWritten } = await out.fh.write(
          bytes,
          written,
          bytes.length - written,
          out.size + written,
        );
        written += bytesWritten;
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
