import type { CheckpointStore } from "../../core/checkpoint.js";
import type { LineBatch, StreamInfo } from "../../core/record.js";
import type { Logger } from "../../observe/logger.js";
import type { LineDecoder } from "./file-reader.js";

export interface TailerOptions {
  roots: readonly string[];
  include: readonly string[];
  exclude: readonly string[];
  maxLineBytes: number;
  lingerMs: number;
  pollMs: number;
  /** Wait after a change event before reading, so that lines written close together are read at once. */
  readDelayMs?: number;
  readFrom: "head" | "tail";
  checkpoints: CheckpointStore;
  log: Logger;
  /**
   * Hands a batch to the pipeline; resolves when every sink accepted it (backpressure). `after`: the same
   * file's previous batch, whose checkpoint must be recorded first.
   */
  submit: (
    batch: LineBatch,
    input: { stream: string; path: string; fp?: string; fpLen?: number; finished?: boolean },
    after?: Promise<void>,
  ) => Promise<void>;
  /** Bytes of lines, over all files, handed on before earlier batches were accepted (the sinks' write-ahead; 0: none). */
  writeAheadBytes?: number;
  /** Node mode: per-file stream identity (CUID/svc/fields per container instance). */
  streamFor?: (info: StreamInfo) => StreamInfo;
  /** Node mode: per-file decoder (CRI / Docker json-file). */
  decoderFor?: (info: StreamInfo) => LineDecoder | undefined;
  /**
   * Since when (ms) this container instance's lines are ours: rotated files of a known stream modified after it
   * and never read (the agent was down while they were written and rotated) are read at start.
   */
  ownedSince?: number;
  /** How folders are found: native inotify watches (default) or chokidar. */
  watcher?: "inotify" | "chokidar" | "poll";
  /** Paths never read (the agent's own outputs and state inside a watched folder; see src/cli/own-output.ts). */
  skip?: (path: string) => boolean;
  /** Reads at once, at most (bounds memory with thousands of files). */
  maxConcurrentReads?: number;
}
