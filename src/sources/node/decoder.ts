import type { LogLine } from "../../core/record.js";
import type { LineDecoder } from "../tail/file-reader.js";

/**
 * Container log decoders implement the tailer's per-file `LineDecoder` hook (src/sources/tail/file-reader.ts):
 * raw lines of one CRI or Docker json-file log in, the application's lines out.
 *
 * Runtimes split long lines into pieces (CRI `P` … `F`; Docker json-file entries without a trailing `\n`);
 * a decoder joins them. It is restartable from a checkpoint: while pieces are pending, `heldFrom()` is the
 * byte offset of the first pending piece, and the tailer's checkpoint never passes it, so a restarted agent
 * re-reads the pieces and emits the joined line once.
 */
export type { LineDecoder } from "../tail/file-reader.js";

/** The decoders' own view: one raw line at a time, plus counters. */
export interface ContainerLogDecoder extends LineDecoder {
  /** Raw lines that were not in the runtime's format; they are passed through unchanged. */
  readonly badLines: number;
}

export interface DecoderOptions {
  /** A joined line longer than this is emitted in tagged parts (`part`/`partial`), like the tailer does. */
  maxLineBytes: number;
  /** Piece counter to resume with (the checkpoint's `endPart`). */
  part?: number;
}

/** Collects the pieces of a split line; shared by the CRI and Docker decoders. */
export class PieceJoiner {
  private pieces: Buffer[] = [];
  private size = 0;
  private startOffset: number | undefined;
  private first: Pick<LogLine, "time" | "timeText" | "channel"> = {};
  part: number;

  constructor(
    private readonly maxLineBytes: number,
    part = 0,
  ) {
    this.part = part;
  }

  get pendingOffset(): number | undefined {
    return this.startOffset;
  }

  get pending(): boolean {
    return this.startOffset !== undefined;
  }

  /** Adds a non-final piece; emits a part when the joined line would exceed maxLineBytes. */
  add(
    text: Buffer,
    raw: LogLine,
    meta: Pick<LogLine, "time" | "timeText" | "channel">,
    out: LogLine[],
  ): void {
    if (this.startOffset === undefined) {
      this.startOffset = raw.offset;
      this.first = meta;
    }
    this.pieces.push(Buffer.from(text)); // copy: the raw bytes are a view into the read buffer
    this.size += text.length;
    if (this.size >= this.maxLineBytes) this.emitPart(out, true);
  }

  /** Adds the final piece and emits the whole line (or its last part). */
  finish(
    text: Buffer,
    raw: LogLine,
    meta: Pick<LogLine, "time" | "timeText" | "channel">,
    out: LogLine[],
  ): void {
    if (this.startOffset === undefined && this.part === 0) {
      // the common case: a whole line in one F entry
      const line: LogLine = { bytes: text, offset: raw.offset, time: meta.time, channel: meta.channel };
      if (meta.timeText !== undefined) line.timeText = meta.timeText;
      out.push(line);
      return;
    }
    if (this.startOffset === undefined) {
      this.startOffset = raw.offset;
      this.first = meta;
    }
    this.pieces.push(text);
    this.size += text.length;
    this.emitPart(out, false);
  }

  /** Emits what is pending as one unterminated line. */
  flush(out: LogLine[]): void {
    if (this.startOffset === undefined) return;
    const offset = this.startOffset;
    const line: LogLine = { bytes: Buffer.concat(this.pieces, this.size), offset, ...defined(this.first) };
    if (this.part > 0) line.part = this.part + 1;
    line.unterminated = true;
    out.push(line);
    this.reset();
    this.part = 0;
  }

  private emitPart(out: LogLine[], partial: boolean): void {
    const bytes = Buffer.concat(this.pieces, this.size);
    const line: LogLine = { bytes, offset: this.startOffset ?? 0, ...defined(this.first) };
    if (partial || this.part > 0) {
      this.part += 1;
      line.part = this.part;
      if (partial) line.partial = true;
    }
    out.push(line);
    this.reset();
    if (!partial) this.part = 0;
  }

  private reset(): void {
    this.pieces = [];
    this.size = 0;
    this.startOffset = undefined;
    this.first = {};
  }
}

function defined(meta: Pick<LogLine, "time" | "timeText" | "channel">): Partial<LogLine> {
  const o: Partial<LogLine> = {};
  if (meta.time !== undefined) o.time = meta.time;
  if (meta.timeText !== undefined) o.timeText = meta.timeText;
  if (meta.channel !== undefined) o.channel = meta.channel;
  return o;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/**
 * RFC 3339 with up to nanoseconds (what containerd, CRI-O and Docker write) → ms since epoch, or undefined.
 * Date.parse alone would drop or reject digits past milliseconds depending on the engine.
 */
export function parseRfc3339(text: string): number | undefined {
  // Fast path for what containerd writes, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, within the second seen last.
  if (
    text.length === 30 &&
    text.charCodeAt(29) === 90 /* Z */ &&
    text.charCodeAt(19) === 46 /* . */ &&
    lastPrefixZ !== "" &&
    text.startsWith(lastPrefixZ)
  ) {
    let ms = 0;
    let ok = true;
    for (let i = 20; i < 29; i++) {
      const d = text.charCodeAt(i) - 48;
      if (d < 0 || d > 9) ok = false;
      if (i < 23) ms = ms * 10 + d;
    }
    if (ok) return lastBase + ms;
  }
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  // Consecutive lines mostly share the same second: remember the last one's epoch value.
  const key = `${m[1]}${m[3]}`;
  let base: number;
  if (key === lastSecond) base = lastBase;
  else {
    base = Date.parse(key);
    if (Number.isNaN(base)) return undefined;
    lastSecond = key;
    lastBase = base;
    lastPrefixZ = m[3] === "Z" ? (m[1] as string) : "";
  }
  const frac = m[2];
  return base + (frac ? Number(frac.length >= 3 ? frac.slice(0, 3) : frac.padEnd(3, "0")) : 0);
}

let lastSecond = "";
let lastBase = 0;
/** `YYYY-MM-DDTHH:MM:SS` of lastSecond when its zone is Z (the fast path), else "". */
let lastPrefixZ = "";

type Meta = Pick<LogLine, "time" | "timeText" | "channel">;

/**
 * Shared by the CRI and Docker decoders: one joiner per stream (a runtime may interleave a stdout piece and
 * a stderr line), pass-through of lines not in the format, and the tailer's own pieces of over-long raw lines.
 */
export abstract class JoiningDecoder implements ContainerLogDecoder {
  private readonly joiners: Record<"stdout" | "stderr", PieceJoiner>;
  private bad = 0;
  /** Header of a raw line the tailer split because it exceeded maxLineBytes (its later pieces have none). */
  private rawPieceMeta: Meta | undefined;

  constructor(opts: DecoderOptions) {
    this.joiners = {
      stdout: new PieceJoiner(opts.maxLineBytes, opts.part ?? 0),
      stderr: new PieceJoiner(opts.maxLineBytes, 0),
    };
  }

  /** Parses one whole raw line: its text, metadata and whether it ends the application's line. */
  protected abstract parse(
    raw: Buffer,
  ): { text: Buffer; meta: Meta & { channel: "stdout" | "stderr" }; final: boolean } | undefined;

  get badLines(): number {
    return this.bad;
  }

  heldFrom(): number | undefined {
    const a = this.joiners.stdout.pendingOffset;
    const b = this.joiners.stderr.pendingOffset;
    if (a === undefined) return b;
    if (b === undefined) return a;
    return Math.min(a, b);
  }

  decode(lines: LogLine[]): LogLine[] {
    const out: LogLine[] = [];
    for (const raw of lines) this.decodeLine(raw, out);
    return out;
  }

  decodeLine(raw: LogLine, out: LogLine[]): void {
    if (raw.part !== undefined) {
      // A raw line longer than maxLineBytes, cut by the tailer: keep its pieces as pieces.
      let bytes = raw.bytes;
      if (raw.part === 1) {
        const p = this.parse(raw.bytes);
        this.rawPieceMeta = p?.meta;
        if (p) bytes = p.text;
      }
      const line: LogLine = {
        bytes,
        offset: raw.offset,
        part: raw.part,
        ...defined(this.rawPieceMeta ?? {}),
      };
      if (raw.partial) line.partial = true;
      if (raw.unterminated) line.unterminated = true;
      out.push(line);
      if (!raw.partial) this.rawPieceMeta = undefined;
      return;
    }
    const p = this.parse(raw.bytes);
    if (!p) {
      // Not in the runtime's format: pass it through unchanged so nothing is lost (it carries the read time).
      this.bad++;
      const line: LogLine = { bytes: raw.bytes, offset: raw.offset };
      if (raw.unterminated) line.unterminated = true;
      out.push(line);
      return;
    }
    const j = this.joiners[p.meta.channel];
    if (p.final) j.finish(p.text, raw, p.meta, out);
    else j.add(p.text, raw, p.meta, out);
  }

  flush(): LogLine[] {
    const out: LogLine[] = [];
    this.joiners.stdout.flush(out);
    this.joiners.stderr.flush(out);
    return out.sort((a, b) => a.offset - b.offset);
  }
}
