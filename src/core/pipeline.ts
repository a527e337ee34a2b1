import type { Logger } from "../observe/logger.js";
import { metrics } from "../observe/metrics.js";
import type { Sink } from "../sinks/sink.js";
import type { CheckpointStore, InputState } from "./checkpoint.js";
import { errorMessage, isIkontainerError } from "./errors.js";
import type { LineBatch } from "./record.js";

export interface SubmitCheckpoint {
  /** Input state to record once every sink accepted the batch (undefined: the source keeps no checkpoint). */
  input?: Omit<InputState, "offset" | "part">;
  /** The same input's previous submission: this batch's checkpoint is recorded only after that one's. */
  after?: Promise<void> | undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Wires sources to sinks: hands each batch to every sink, retries a sink that failed (with backoff, never
 * skipping), and only when all sinks accepted records the input offset and the sinks' receipts together.
 */
export class Pipeline {
  private stopping = false;
  private lastOk = true;

  constructor(
    readonly sinks: readonly Sink[],
    private readonly checkpoints: CheckpointStore | undefined,
    private readonly log: Logger,
  ) {}

  /**
   * Restores each sink's checkpointed receipts (cuts back uncheckpointed output). Without a checkpoint store
   * (exec mode: a pipe cannot be replayed) sinks are not recovered and only append.
   */
  async recover(): Promise<void> {
    if (!this.checkpoints) return;
    const cp = this.checkpoints;
    for (const s of this.sinks)
      await s.recover?.(cp.sinkState(s.id), (key, value) => cp.persistSinkValue(s.id, key, value));
  }

  /**
   * Bytes of one input's lines that may be submitted before the earlier batches were accepted: the smallest
   * write-ahead of the sinks (0 when any sink needs each batch accepted before the next).
   */
  get writeAheadBytes(): number {
    if (this.sinks.length === 0) return 0;
    return Math.min(...this.sinks.map((s) => s.writeAheadBytes ?? 0));
  }

  get healthy(): boolean {
    return this.lastOk;
  }

  /** After this, a sink that keeps failing is given up on (the batch stays unacknowledged and is replayed next start). */
  beginStop(): void {
    this.stopping = true;
  }

  /** Resolves when every sink accepted `batch`; rejects only when stopping with a sink still failing. */
  async submit(batch: LineBatch, cp: SubmitCheckpoint = {}): Promise<void> {
    // An empty batch only moves the checkpoint (a finished or truncated file).
    const receipts =
      batch.lines.length === 0
        ? []
        : await Promise.all(this.sinks.map((s) => this.writeUntilAccepted(s, batch)));
    let bytes = 0;
    for (const l of batch.lines) bytes += l.bytes.length;
    // batches submitted ahead are accepted in any order; their checkpoints are recorded in submission order
    if (cp.after) await cp.after;
    const n = batch.lines.length;
    for (const s of this.sinks) metrics.linesOut.inc({ sink: s.id }, n);
    metrics.linesIn.inc(n);
    metrics.bytesIn.inc(bytes);
    if (this.checkpoints && cp.input) {
      this.checkpoints.commit(
        batch.inputId,
        { ...cp.input, offset: batch.endOffset, part: batch.endPart },
        receipts.map((r, i) => (r ? { sink: this.sinks[i]!.id, key: r.key, value: r.value } : undefined)),
      );
    }
  }

  private async writeUntilAccepted(sink: Sink, batch: LineBatch) {
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await sink.write(batch);
        this.lastOk = true;
        return r;
      } catch (e) {
        this.lastOk = false;
        metrics.sinkRetries.inc({ sink: sink.id });
        metrics.errors.inc({ kind: "sink" });
        if (this.stopping) throw e;
        this.log.warn(
          {
            sink: sink.id,
            attempt,
            err: errorMessage(e),
            ...(isIkontainerError(e) ? { code: e.code } : {}),
            retryInMs: delay,
          },
          "sink did not accept a batch; retrying",
        );
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  async close(): Promise<void> {
    for (const s of this.sinks) {
      try {
        await s.close();
      } catch (e) {
        this.log.error({ sink: s.id, err: errorMessage(e) }, "sink close failed");
      }
    }
  }
}
