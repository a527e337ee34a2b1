import { crc32 } from "node:zlib";
import { ERR_SINK } from "../../core/errors.js";
import type { LineBatch, LogLine, StreamInfo } from "../../core/record.js";

/**
 * The disk buffer's record framing (20-byte head, then the payload):
 *   MAGIC "IKB2" (4) | payload length (4) | line count (4) | CRC32 of length + count (4) | CRC32 of payload (4)
 * the payload being `header length (4) | JSON header (stream, input, line metadata) | the lines' bytes`.
 * The head's own checksum makes length and line count trustworthy even when the payload is damaged: such a
 * frame is skipped exactly, and its lines counted. When the head itself is damaged, magic + length + checksum
 * let a reader find the next intact frame (`scanFrames`).
 */

export const MAGIC = 0x494b4232; // "IKB2"
export const FRAME_HEAD = 20;
const MAGIC_BYTES = Buffer.from([0x49, 0x4b, 0x42, 0x32]);

/** Payload length and line count of an intact frame head at `at`, else undefined. */
export function readHead(data: Buffer, at = 0): { len: number; lines: number } | undefined {
  if (at + FRAME_HEAD > data.length || data.readUInt32BE(at) !== MAGIC) return undefined;
  if (crc32(data.subarray(at + 4, at + 12)) !== data.readUInt32BE(at + 12)) return undefined;
  const len = data.readUInt32BE(at + 4);
  return len < 4 ? undefined : { len, lines: data.readUInt32BE(at + 8) };
}

/** The payload's checksum as written in the head at `at`. */
export const payloadCrc = (data: Buffer, at = 0): number => data.readUInt32BE(at + 16);

interface LineMeta {
  n: number;
  o: number;
  pt?: number;
  pa?: true;
  u?: true;
  t?: number;
  tt?: string;
  c?: "stdout" | "stderr";
}

interface FrameHeader {
  s: StreamInfo;
  i: string;
  e: number;
  p: number;
  r: number;
  l: LineMeta[];
}

export function encodeFrame(batch: LineBatch): Buffer {
  const l: LineMeta[] = batch.lines.map((x) => {
    const m: LineMeta = { n: x.bytes.length, o: x.offset };
    if (x.part !== undefined) m.pt = x.part;
    if (x.partial) m.pa = true;
    if (x.unterminated) m.u = true;
    if (x.time !== undefined) m.t = x.time;
    if (x.timeText !== undefined) m.tt = x.timeText;
    if (x.channel !== undefined) m.c = x.channel;
    return m;
  });
  const header: FrameHeader = {
    s: batch.stream,
    i: batch.inputId,
    e: batch.endOffset,
    p: batch.endPart,
    r: batch.readAt,
    l,
  };
  const h = Buffer.from(JSON.stringify(header));
  let bodyLen = 0;
  for (const x of batch.lines) bodyLen += x.bytes.length;
  const payloadLen = 4 + h.length + bodyLen;
  const out = Buffer.allocUnsafe(FRAME_HEAD + payloadLen);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(payloadLen, 4);
  out.writeUInt32BE(batch.lines.length, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 12)), 12);
  out.writeUInt32BE(h.length, FRAME_HEAD);
  h.copy(out, FRAME_HEAD + 4);
  let at = FRAME_HEAD + 4 + h.length;
  for (const x of batch.lines) at += x.bytes.copy(out, at);
  out.writeUInt32BE(crc32(out.subarray(FRAME_HEAD)), 16);
  return out;
}

export function decodePayload(payload: Buffer): LineBatch {
  const hLen = payload.readUInt32BE(0);
  const h = JSON.parse(payload.subarray(4, 4 + hLen).toString("utf8")) as FrameHeader;
  let at = 4 + hLen;
  const lines: LogLine[] = h.l.map((m) => {
    const line: LogLine = { bytes: payload.subarray(at, at + m.n), offset: m.o };
    at += m.n;
    if (m.pt !== undefined) line.part = m.pt;
    if (m.pa) line.partial = true;
    if (m.u) line.unterminated = true;
    if (m.t !== undefined) line.time = m.t;
    if (m.tt !== undefined) line.timeText = m.tt;
    if (m.c !== undefined) line.channel = m.c;
    return line;
  });
  return { stream: h.s, lines, inputId: h.i, endOffset: h.e, endPart: h.p, readAt: h.r };
}

/** Decodes one whole frame (checks magic and both checksums). */
export function decodeFrame(frame: Buffer): LineBatch {
  const head = readHead(frame);
  const payload = frame.subarray(FRAME_HEAD);
  if (!head || head.len !== payload.length || crc32(payload) !== payloadCrc(frame))
    throw ERR_SINK("corrupt buffer frame (bad magic or checksum)");
  return decodePayload(payload);
}

/** An intact frame at `at` of `data` (head and payload checksums)? Returns its length, else -1. */
export function intactFrameAt(data: Buffer, at: number): number {
  const head = readHead(data, at);
  if (!head || at + FRAME_HEAD + head.len > data.length) return -1;
  const payload = data.subarray(at + FRAME_HEAD, at + FRAME_HEAD + head.len);
  return crc32(payload) === payloadCrc(data, at) ? FRAME_HEAD + head.len : -1;
}

/** Lines of a frame whose head is damaged but whose JSON header is still readable; else undefined. */
function linesOfDamaged(data: Buffer, at: number, end: number): number | undefined {
  try {
    const hLen = data.readUInt32BE(at + FRAME_HEAD);
    const from = at + FRAME_HEAD + 4;
    if (from + hLen > end) return undefined;
    const h = JSON.parse(data.subarray(from, from + hLen).toString("utf8")) as { l?: unknown };
    return Array.isArray(h.l) ? h.l.length : undefined;
  } catch {
    return undefined;
  }
}

export interface DamagedRange {
  /** Offsets in the segment: from the damaged frame's start to the next intact frame (or the end). */
  start: number;
  end: number;
  /** Lines the damaged frame held, when its header is readable. */
  lines?: number;
}

export interface FrameScan {
  frames: Array<{ at: number; length: number }>;
  /** Damaged stretches between intact frames (skipped, never delivered). */
  damaged: DamagedRange[];
  /** Offset after the last intact frame, or after the last damaged stretch when nothing torn follows it. */
  end: number;
  /** Bytes after `end`: a frame cut short by a crash mid-append (to be truncated). */
  tornBytes: number;
}

/**
 * Walks the frames of a segment's bytes from `from`. A frame that fails its checks is skipped up to the next
 * offset holding an intact frame (resync on the magic, confirmed by length and checksum). Bytes at the very
 * end that start a frame longer than what is left are a torn append (kill -9 during a write); a complete
 * frame with a bad checksum, or garbage followed by intact frames, is damage. Only the segment being appended
 * to can have a torn end (`allowTorn`); anywhere else such bytes are damage too.
 */
export function scanFrames(data: Buffer, from = 0, allowTorn = true): FrameScan {
  const frames: FrameScan["frames"] = [];
  const damaged: DamagedRange[] = [];
  let at = from;
  while (at < data.length) {
    const len = intactFrameAt(data, at);
    if (len > 0) {
      frames.push({ at, length: len });
      at += len;
      continue;
    }
    const head = readHead(data, at);
    if (head && at + FRAME_HEAD + head.len <= data.length) {
      // a trustworthy head, a damaged payload: skip exactly this frame, its lines are known
      damaged.push({ start: at, end: at + FRAME_HEAD + head.len, lines: head.lines });
      at += FRAME_HEAD + head.len;
      continue;
    }
    let next = data.indexOf(MAGIC_BYTES, at + 1);
    while (next >= 0 && intactFrameAt(data, next) < 0) next = data.indexOf(MAGIC_BYTES, next + 1);
    if (next < 0) {
      // nothing intact follows: a torn append if the frame claims more bytes than the file has
      const torn =
        at + FRAME_HEAD > data.length || (head !== undefined && at + FRAME_HEAD + head.len > data.length);
      if (torn && allowTorn) return { frames, damaged, end: at, tornBytes: data.length - at };
      next = data.length;
    }
    const lines = linesOfDamaged(data, at, next);
    damaged.push(lines === undefined ? { start: at, end: next } : { start: at, end: next, lines });
    at = next;
  }
  return { frames, damaged, end: at, tornBytes: 0 };
}
