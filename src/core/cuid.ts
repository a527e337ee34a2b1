import { linkSync, unlinkSync } from "node:fs";
import { join } from "node:path";
// The only import of uuid: CUIDs are minted here and nowhere else (readers only validate).
import { v4, v7 } from "uuid";
import { ERR_STATE_DIR, isIkontainerError } from "./errors.js";
import {
  mkdirWithMode,
  readFileNoFollow,
  STATE_DIR_MODE,
  STATE_FILE_MODE,
  writeFileExclusive,
} from "./safe-fs.js";

/**
 * The CUID names a container instance, not an agent process: it is made locally (no central server) the
 * first time an agent starts with a given state dir and read back on every later start. The state dir
 * lives as long as the container (an emptyDir in a pod), so an agent restart keeps the CUID while a new
 * container gets a new one.
 */
export interface CuidRecord {
  cuid: string;
  version: 4 | 7;
  created_at: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** A UUID of version 1–8 with the RFC 9562 variant. */
export function isUuid(s: unknown): s is string {
  return typeof s === "string" && UUID_RE.test(s);
}

/**
 * UUID v7 (RFC 9562 §5.7): 48-bit Unix time in ms, version 7, the RFC variant, a counter seeded with random
 * bits: the uuid package keeps v7s made by one process strictly increasing, also within one millisecond
 * (node mode mints many CUIDs at once). `now` fixes the time (tests, records of a known start).
 */
export function uuidV7(now?: number): string {
  return now === undefined ? v7() : v7({ msecs: now });
}

export function newCuid(version: 4 | 7): string {
  return version === 4 ? v4() : v7();
}

export function cuidPath(stateDir: string): string {
  return join(stateDir, "cuid.json");
}

export function readCuid(stateDir: string): CuidRecord | undefined {
  let text: string | undefined;
  try {
    text = readFileNoFollow(cuidPath(stateDir));
  } catch (e) {
    if (isIkontainerError(e)) throw e;
    throw ERR_STATE_DIR(`cannot read ${cuidPath(stateDir)}: ${(e as Error).message}`, e);
  }
  if (text === undefined) return undefined;
  try {
    const rec = JSON.parse(text) as CuidRecord;
    if (isUuid(rec.cuid)) return rec;
  } catch {
    // fall through
  }
  throw ERR_STATE_DIR(`${cuidPath(stateDir)} is corrupt; remove it to give this container a new CUID`);
}

/** Returns the state dir's CUID, creating it (exclusively, so two racing starts agree) when there is none. */
export function loadOrCreateCuid(stateDir: string, version: 4 | 7): CuidRecord {
  try {
    mkdirWithMode(stateDir, STATE_DIR_MODE);
  } catch (e) {
    throw ERR_STATE_DIR(`cannot create state dir ${stateDir}: ${(e as Error).message}`, e);
  }
  const existing = readCuid(stateDir);
  if (existing) return existing;
  const rec: CuidRecord = { cuid: newCuid(version), version, created_at: new Date().toISOString() };
  // Write a private file, then hard-link it into place: the CUID file appears complete or not at all,
  // and link() fails with EEXIST when a racing start won.
  const tmp = `${cuidPath(stateDir)}.${process.pid}.tmp`;
  try {
    writeFileExclusive(tmp, `${JSON.stringify(rec)}\n`, STATE_FILE_MODE, true);
    linkSync(tmp, cuidPath(stateDir));
    return rec;
  } catch (e) {
    if (isIkontainerError(e)) throw e;
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return readCuid(stateDir)!;
    throw ERR_STATE_DIR(`cannot write ${cuidPath(stateDir)}: ${(e as Error).message}`, e);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}
