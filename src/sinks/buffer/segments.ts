import { open, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../observe/logger.js";
import { type DamagedRange, scanFrames } from "./frame.js";
import { counterDamagedBytes, counterDamagedFrames, counterDamagedLines } from "./metrics.js";

/** The queue's segment files (`<20-digit base position>.seg`): loading them at start, reporting damage. */

export interface Segment {
  base: number;
  /** Bytes of complete frames (and damaged stretches between them) in the file. */
  size: number;
  path: string;
  /** Damaged stretches (segment offsets) that are skipped when reading; sorted by start. */
  damaged: DamagedRange[];
}

const SEG_RE = /^(\d{20})\.seg$/;

export const segmentName = (base: number): string => `${String(base).padStart(20, "0")}.seg`;

/**
 * Reads every segment: cuts a torn append at the end of the last one, finds damaged stretches (kept in the
 * segment, skipped when reading), and returns the queue positions where frames start (to check delivered.log).
 */
export async function loadSegments(
  dir: string,
  log: Logger,
  sinkId: string,
): Promise<{ segments: Segment[]; endPos: number; boundaries: Set<number> }> {
  const segments: Segment[] = [];
  let endPos = 0;
  const names = (await readdir(dir)).filter((n) => SEG_RE.test(n)).sort();
  const boundaries = new Set<number>(); // queue positions where a frame starts or a segment ends
  for (const [i, name] of names.entries()) {
    const base = Number(SEG_RE.exec(name)![1]);
    const path = join(dir, name);
    if (segments.length > 0 && base < endPos) {
      await unlink(path); // overlaps a segment that is still valid: left over from a torn roll-over
      continue;
    }
    const scan = scanFrames(await readFile(path), 0, i === names.length - 1);
    if (scan.tornBytes > 0) {
      log.info(
        { sink: sinkId, segment: path, offset: scan.end, bytes: scan.tornBytes },
        "buffer: cutting a frame torn by a crash mid-append (it was never acknowledged)",
      );
      const fh = await open(path, "r+");
      try {
        await fh.truncate(scan.end);
      } finally {
        await fh.close();
      }
    }
    boundaries.add(base);
    for (const f of scan.frames) boundaries.add(base + f.at);
    for (const d of scan.damaged) boundaries.add(base + d.start);
    boundaries.add(base + scan.end);
    segments.push({ base, size: scan.end, path, damaged: scan.damaged });
    endPos = base + scan.end;
  }
  return { segments, endPos, boundaries };
}

/** Counts and logs a damaged stretch of a segment (its lines are lost to the destination). */
export function reportDamage(log: Logger, sinkId: string, seg: Segment, d: DamagedRange): void {
  counterDamagedFrames.inc({ sink: sinkId });
  counterDamagedBytes.inc({ sink: sinkId }, d.end - d.start);
  if (d.lines !== undefined) counterDamagedLines.inc({ sink: sinkId }, d.lines);
  log.error(
    {
      sink: sinkId,
      segment: seg.path,
      offset: d.start,
      bytes: d.end - d.start,
      ...(d.lines !== undefined ? { lines: d.lines } : {}),
      resumeAt: d.end,
    },
    "buffer: damaged frame in a segment (checksum mismatch); skipping it and delivering from the next intact frame",
  );
}
