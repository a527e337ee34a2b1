import { mkdir, unlink } from "node:fs/promises";
import { ERR_STATE_DIR, errorMessage } from "../../core/errors.js";
import type { Logger } from "../../observe/logger.js";
import { DeliveryLog } from "./delivery-log.js";
import { counterDeliveryLogRepairs } from "./metrics.js";
import { loadSegments, reportDamage, type Segment } from "./segments.js";

/** A queue folder as found at start: where delivery got to, and the segments still holding undelivered frames. */
export interface OpenedQueue {
  deliveryLog: DeliveryLog;
  segments: Segment[];
  /** Position after the last durable frame. */
  endPos: number;
  /** First undelivered position. */
  cursor: number;
}

/**
 * Opens (or creates) a sink's queue folder after any stop, clean or not: loads `delivered.log` and the
 * segments, distrusts a delivery position the queue cannot have reached (delivering everything again:
 * duplicates rather than loss), deletes segments delivered before the stop, and reports damage not yet delivered.
 */
export async function openQueue(
  dir: string,
  fsync: boolean,
  log: Logger,
  sinkId: string,
): Promise<OpenedQueue> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw ERR_STATE_DIR(`cannot create buffer folder ${dir}: ${errorMessage(e)}`, e);
  }
  // Where delivery got to, and what recent rounds delivered (for recover()).
  const deliveryLog = new DeliveryLog(dir, fsync);
  const loaded = await deliveryLog.load();
  let cursor = loaded.records[loaded.records.length - 1]?.pos ?? 0;

  const loadedSegments = await loadSegments(dir, log, sinkId);
  const segments = loadedSegments.segments;
  let endPos = loadedSegments.endPos;
  const boundaries = loadedSegments.boundaries;

  // A position the queue cannot have reached, or a damaged file: start over (duplicates rather than loss).
  const first = segments[0]?.base;
  let problem = loaded.damage;
  if (!problem && first !== undefined && cursor > first && !boundaries.has(cursor))
    problem =
      cursor > endPos
        ? `position ${cursor} is past the end of the queue (${endPos})`
        : `position ${cursor} is not the start of a frame`;
  if (problem) {
    counterDeliveryLogRepairs.inc({ sink: sinkId });
    log.warn(
      { sink: sinkId, file: deliveryLog.path, pos: cursor, reason: problem, restartAt: first ?? 0 },
      "buffer: delivered.log cannot be right; delivering the whole queue again (lines may arrive twice)",
    );
    deliveryLog.records = [];
    cursor = first ?? 0;
  }
  await deliveryLog.rewrite();

  // Segments fully delivered but not yet deleted when we stopped (never the last one).
  while (segments.length > 1 && segments[0]!.base + segments[0]!.size <= cursor)
    await unlink(segments.shift()!.path);
  for (const seg of segments)
    for (const d of seg.damaged) if (seg.base + d.end > cursor) reportDamage(log, sinkId, seg, d);

  if (segments.length === 0) endPos = Math.max(endPos, cursor);
  if (cursor > endPos) cursor = endPos;
  if (cursor < (segments[0]?.base ?? cursor)) cursor = segments[0]!.base;
  return { deliveryLog, segments, endPos, cursor };
}
