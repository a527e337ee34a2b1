import { Counter, Gauge, Registry } from "./prom.js";

/** One registry for the whole agent; modules add their metrics to `registry`. */
export const registry = new Registry();

const m = <T>(make: (r: Registry[]) => T): T => make([registry]);

export const metrics = {
  linesIn: m(
    (registers) =>
      new Counter({ name: "ikontainer_lines_in_total", help: "Lines read from sources", registers }),
  ),
  bytesIn: m(
    (registers) =>
      new Counter({ name: "ikontainer_bytes_in_total", help: "Bytes of lines read from sources", registers }),
  ),
  linesOut: m(
    (registers) =>
      new Counter({
        name: "ikontainer_lines_out_total",
        help: "Lines accepted by a sink",
        labelNames: ["sink"],
        registers,
      }),
  ),
  bytesOut: m(
    (registers) =>
      new Counter({
        name: "ikontainer_bytes_out_total",
        help: "Bytes written by a sink",
        labelNames: ["sink"],
        registers,
      }),
  ),
  sinkRetries: m(
    (registers) =>
      new Counter({
        name: "ikontainer_sink_retries_total",
        help: "Batches a sink failed and will retry",
        labelNames: ["sink"],
        registers,
      }),
  ),
  errors: m(
    (registers) =>
      new Counter({
        name: "ikontainer_errors_total",
        help: "Errors by kind (permission, read, symlink_escape, sink, checkpoint, dns)",
        labelNames: ["kind"],
        registers,
      }),
  ),
  longLinePieces: m(
    (registers) =>
      new Counter({
        name: "ikontainer_long_line_pieces_total",
        help: "Pieces emitted for lines over --max-line-bytes",
        registers,
      }),
  ),
  unterminated: m(
    (registers) =>
      new Counter({
        name: "ikontainer_unterminated_lines_total",
        help: "Lines without a final newline, emitted after rotation/deletion/exit",
        registers,
      }),
  ),
  rotations: m(
    (registers) =>
      new Counter({
        name: "ikontainer_rotations_total",
        help: "Rotations seen: rename, truncate (copytruncate), delete",
        labelNames: ["kind"],
        registers,
      }),
  ),
  filesWatched: m(
    (registers) =>
      new Gauge({ name: "ikontainer_files_watched", help: "Files currently open for reading", registers }),
  ),
  foldersPolled: m(
    (registers) =>
      new Gauge({
        name: "ikontainer_folders_polled",
        help: "Folders the kernel would not watch (inotify limit, permission), listed on every poll instead",
        registers,
      }),
  ),
  lagBytes: m(
    (registers) =>
      new Gauge({
        name: "ikontainer_lag_bytes",
        help: "Bytes written to watched files but not yet accepted by every sink",
        registers,
      }),
  ),
};
