/**
 * The unit that flows source → transforms → sinks.
 *
 * A source reads bytes and cuts them into lines; one `LineBatch` carries consecutive lines of ONE stream
 * (one log file identity, or one child stdio stream) together with the input position reached after them,
 * so a sink that accepted the batch lets the checkpoint advance to `endOffset`.
 */

/** Where lines come from. `key` is stable across rotations: it names the stream, not the inode. */
export interface StreamInfo {
  /** Stable identity of the stream, e.g. `file:<root-index>:<relative path>` or `exec:stdout`. */
  key: string;
  /** Absolute path the lines were read from (the name at the time the file was opened). */
  path: string;
  /** Path relative to the watched folder (file sink mirrors it); for exec: `stdout.log` / `stderr.log`. */
  relPath: string;
  /** `stdout`/`stderr` for exec and CRI logs; `file` otherwise. */
  channel: "file" | "stdout" | "stderr";
  /** Per-stream identity override (node mode: one CUID per container instance). */
  cuid?: string;
  svc?: string;
  /** Extra fields every record of this stream carries (pod, namespace, container, …). */
  fields?: Readonly<Record<string, string | number>>;
}

export interface LogLine {
  /** The line's bytes without `\n` (and without one trailing `\r`). A view into the read buffer: do not keep. */
  bytes: Buffer;
  /** Byte offset of the line's first byte in the input stream (file identity); with `part`, unique per line. */
  offset: number;
  /** 1-based piece number when an over-long line was split; undefined for whole lines. */
  part?: number;
  /** True for every piece of a split line except the last. */
  partial?: boolean;
  /** True when the line had no terminating newline (emitted at rotation/deletion/exit after the linger). */
  unterminated?: boolean;
  /** Source timestamp in ms since epoch when the source knows one (CRI/Docker logs), else read time. */
  time?: number;
  /** Nanosecond-precision timestamp string from the source, when available (CRI). */
  timeText?: string;
  /** Channel override per line (CRI files mix stdout and stderr). */
  channel?: "stdout" | "stderr";
}

export interface LineBatch {
  stream: StreamInfo;
  lines: LogLine[];
  /** Identity of the input file (`<dev>:<ino>`) or `exec:<channel>`; the unit of checkpoints. */
  inputId: string;
  /** Input offset after the last byte these lines consumed. */
  endOffset: number;
  /** Piece counter state after this batch (non-zero while a long line is being split). */
  endPart: number;
  /** Read time, ms since epoch. */
  readAt: number;
}

/** The identity stamped on every line. */
export interface Identity {
  cuid: string;
  svc: string;
}
