import type { Writable } from "node:stream";
import { ERR_SINK } from "../core/errors.js";
import type { LineBatch } from "../core/record.js";
import type { BatchEncoder } from "../transforms/tag.js";
import type { Sink, SinkReceipt } from "./sink.js";

/**
 * `stdout`: stamped lines on the agent's standard output (exec mode also routes the child's stderr lines to
 * its own stderr). At least once across a crash: a pipe cannot be cut back.
 */
export class StreamSink implements Sink {
  constructor(
    readonly id: string,
    private readonly encode: BatchEncoder,
    private readonly out: Writable,
    private readonly err: Writable = out,
  ) {}

  write(batch: LineBatch): Promise<SinkReceipt | undefined> {
    const target = batch.stream.channel === "stderr" ? this.err : this.out;
    const bytes = this.encode(batch);
    return new Promise((resolve, reject) => {
      target.write(bytes, (e) =>
        e ? reject(ERR_SINK(`${this.id} write failed: ${e.message}`, e)) : resolve(undefined),
      );
    });
  }

  async close(): Promise<void> {}
}
