import { join } from "node:path";
import { ERR_STATE_DIR, isIkontainerError } from "./errors.js";
import { mkdirWithMode, readFileNoFollow, STATE_DIR_MODE, writeFileAtomic } from "./safe-fs.js";

/** Progress of one input (one file identity, `<dev>:<ino>`). */
export interface InputState {
  /** Stream key (stable across rotations) and the path last seen for this input. */
  stream: string;
  path: string;
  /** First byte not yet accepted by every sink; a restart reads from here. */
  offset: number;
  /** Pieces of an over-long line already accepted at `offset`. */
  part: number;
  /** Hex digest of the first `fpLen` bytes: tells a reused inode number from the file we were reading. */
  fp?: string;
  fpLen?: number;
  /** Read to its end after rotation/deletion: never read again under another name. */
  finished?: boolean;
}

interface CheckpointFile {
  version: 1;
  inputs: Record<string, InputState>;
  sinks: Record<string, Record<string, unknown>>;
}

/**
 * Offsets and sink receipts, written together in one atomic rename, so after `kill -9` the output a sink
 * reports (e.g. a file's size) always matches the input offsets: the file sink cuts back anything past it.
 */
export class CheckpointStore {
  private data: CheckpointFile;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  readonly path: string;
  /** True when a checkpoint existed at start (this is a restart). */
  readonly existed: boolean;

  constructor(stateDir: string) {
    this.path = join(stateDir, "checkpoints.json");
    try {
      mkdirWithMode(stateDir, STATE_DIR_MODE);
    } catch (e) {
      throw ERR_STATE_DIR(`cannot create state dir ${stateDir}: ${(e as Error).message}`, e);
    }
    let text: string | undefined;
    try {
      text = readFileNoFollow(this.path);
    } catch (e) {
      if (isIkontainerError(e)) throw e;
      throw ERR_STATE_DIR(`cannot read ${this.path}: ${(e as Error).message}`, e);
    }
    this.existed = text !== undefined;
    if (text === undefined) this.data = { version: 1, inputs: {}, sinks: {} };
    else {
      try {
        this.data = JSON.parse(text) as CheckpointFile;
      } catch (e) {
        throw ERR_STATE_DIR(
          `${this.path} is corrupt (${(e as Error).message}); move it away to start over`,
          e,
        );
      }
    }
  }

  input(id: string): InputState | undefined {
    return this.data.inputs[id];
  }

  inputs(): Readonly<Record<string, InputState>> {
    return this.data.inputs;
  }

  sinkState(sinkId: string): Record<string, unknown> {
    return this.data.sinks[sinkId] ?? {};
  }

  /** Records accepted progress (in memory; `flush` makes it durable). Synchronous, so input and receipts agree. */
  commit(
    id: string,
    state: InputState | undefined,
    receipts: ReadonlyArray<{ sink: string; key: string; value: unknown } | undefined>,
  ): void {
    if (state) this.data.inputs[id] = state;
    for (const r of receipts) {
      if (!r) continue;
      let s = this.data.sinks[r.sink];
      if (!s) {
        s = {};
        this.data.sinks[r.sink] = s;
      }
      s[r.key] = r.value;
    }
    this.dirty = true;
  }

  /**
   * Records one sink value and resolves once it is durable (the next flush, coalesced over ~10 ms): for state
   * a sink needs on disk BEFORE it writes (the file sink's size of a file it is about to open).
   */
  persistSinkValue(sink: string, key: string, value: unknown): Promise<void> {
    this.commit("", undefined, [{ sink, key, value }]);
    this.soon ??= new Promise<void>((resolve, reject) =>
      setTimeout(() => {
        this.soon = undefined;
        try {
          this.flush(true);
          resolve();
        } catch (e) {
          reject(e);
        }
      }, 10),
    );
    return this.soon;
  }

  private soon: Promise<void> | undefined;

  forget(id: string): void {
    if (id in this.data.inputs) {
      delete this.data.inputs[id];
      this.dirty = true;
    }
  }

  /** Atomic write: temp file + rename (readers see the old or the new file, never half of one). */
  flush(force = false): void {
    if (!this.dirty && !force) return;
    try {
      // A link planted at checkpoints.json.tmp is removed, never written through (src/core/safe-fs.ts).
      writeFileAtomic(this.path, JSON.stringify(this.data));
      this.dirty = false;
    } catch (e) {
      if (isIkontainerError(e)) throw e;
      throw ERR_STATE_DIR(`cannot write checkpoint ${this.path}: ${(e as Error).message}`, e);
    }
  }

  start(intervalMs: number, onError: (e: unknown) => void): void {
    this.timer = setInterval(() => {
      try {
        this.flush();
      } catch (e) {
        onError(e);
      }
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.flush(true);
  }
}
