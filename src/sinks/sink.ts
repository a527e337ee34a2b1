import type { Identity, LineBatch } from "../core/record.js";

/**
 * What a sink hands back for an accepted batch. The pipeline stores it in the checkpoint under
 * `sinks[sink.id][key]` in the same atomic write as the batch's input offset, so output progress and
 * input progress can never disagree after a crash (the file sink returns each output file's size).
 */
export interface SinkReceipt {
  key: string;
  value: unknown;
}

/** Stores `value` under `key` in the sink's checkpoint state and resolves when that is on disk. */
export type PersistSinkValue = (key: string, value: unknown) => Promise<void>;

/**
 * One small interface for every destination.
 *
 * - `write` gets batches in order per stream; it resolves only when the destination has ACCEPTED the batch
 *   (file: bytes written; fluentd: acked; Elasticsearch: every bulk item stored or dead-lettered).
 *   It rejects when the batch was not accepted; the pipeline retries with backoff and does not advance.
 * - `recover` gets back, before the first write, every receipt value that was checkpointed last time,
 *   so the sink can cut back work that was done but not checkpointed; `persist` records a value durably
 *   before a write that depends on it (not called at all when the source keeps no checkpoint: exec mode).
 */
export interface Sink {
  /** Stable id, e.g. `file:/var/log/out`, `stdout`, `fluentd://host:24224`. Keys the checkpoint state. */
  readonly id: string;
  recover?(state: Readonly<Record<string, unknown>>, persist: PersistSinkValue): Promise<void>;
  write(batch: LineBatch): Promise<SinkReceipt | undefined>;
  /**
   * Bytes of one stream's lines the sink takes in writes not yet resolved (it stores batches in any order and
   * returns no receipt). Absent or 0: `write` is called again only after the stream's previous write resolved.
   */
  readonly writeAheadBytes?: number;
  /** Flush and release resources; resolve when everything accepted so far is durable. */
  close(): Promise<void>;
}

export interface SinkContext {
  identity: Identity;
  format: "append" | "json";
  stateDir: string;
}
