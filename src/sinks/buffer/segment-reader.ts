import { open, readFile } from "node:fs/promises";
import { crc32 } from "node:zlib";
import type { Logger } from "../../observe/logger.js";
import type { Entry } from "./entries.js";
import { decodePayload, FRAME_HEAD, payloadCrc, readHead, scanFrames } from "./frame.js";
import { reportDamage, type Segment } from "./segments.js";

/** Reading the queue back from its segment files: entries in order, damaged stretches skipped. */

/**
 * Damage found while reading at `off` of `seg` (after the segment was loaded, e.g. by the disk): records the
 * damaged stretch in the segment, reports it once, and returns the offset of the next intact frame.
 */
export async function resyncSegment(seg: Segment, off: number, log: Logger, sinkId: string): Promise<number> {
  const known = seg.damaged.find((d) => d.start === off);
  if (known) return known.end;
  const data = (await readFile(seg.path)).subarray(0, seg.size);
  const d = scanFrames(data, off, false).damaged[0] ?? { start: off, end: seg.size };
  seg.damaged.push(d);
  seg.damaged.sort((x, y) => x.start - y.start);
  reportDamage(log, sinkId, seg, d);
  return d.end;
}

/**
 * Reads entries in [from, to) of the queue, up to about `maxBytes`, from the segments as they are when reading
 * starts, skipping damaged stretches; `resync` finds the next intact frame after damage met on the way.
 */
export async function* readEntries(
  segments: () => readonly Segment[],
  from: number,
  to: number,
  maxBytes: number,
  resync: (seg: Segment, off: number) => Promise<number>,
): AsyncGenerator<Entry> {
  let pos = from;
  let read = 0;
  for (const seg of [...segments()]) {
    if (seg.base + seg.size <= pos) continue;
    if (seg.base >= to) break;
    if (pos < seg.base) pos = seg.base; // a gap left by a lost segment: continue at the next one
    const fh = await open(seg.path, "r");
    try {
      const head = Buffer.alloc(FRAME_HEAD);
      while (pos < to && pos < seg.base + seg.size && read < maxBytes) {
        const off = pos - seg.base;
        const damage = seg.damaged.find((d) => d.start === off);
        if (damage) {
          pos = seg.base + damage.end;
          continue;
        }
        await fh.read(head, 0, FRAME_HEAD, off);
        const h = readHead(head);
        let payload: Buffer | undefined;
        if (h && off + FRAME_HEAD + h.len <= seg.size) {
          payload = Buffer.allocUnsafe(h.len);
          await fh.read(payload, 0, h.len, off + FRAME_HEAD);
          if (crc32(payload) !== payloadCrc(head)) payload = undefined;
        }
        if (!payload) {
          // damaged since the segment was opened (e.g. by the disk): skip to the next intact frame
          pos = seg.base + (await resync(seg, off));
          continue;
        }
        const start = pos;
        pos += FRAME_HEAD + payload.length;
        read += FRAME_HEAD + payload.length;
        yield { start, end: pos, batch: decodePayload(payload) };
      }
    } finally {
      await fh.close();
    }
    if (read >= maxBytes) return;
  }
}
