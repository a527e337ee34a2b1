import type { Stats } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { InputState } from "../../core/checkpoint.js";
import { FINGERPRINT_BYTES } from "./file-reader.js";
import { type ContentMark, isCopyOf, isPrefixOf, isRotatedName, startsWith } from "./same-content.js";

export const idOf = (st: Stats) => `${st.dev}:${st.ino}`;

/** A rotated file next to a stream's file, and where reading it must start. */
export interface RotatedFile {
  path: string;
  id: string;
  st: Stats;
  /** The stream (current file path) it belongs to. */
  streamPath: string;
  /**
   * rename: the checkpointed inode itself, under a rotated name (resumes at its checkpoint);
   * copy: a copytruncate copy of checkpointed content (resumes at that input's offset);
   * unseen: content no checkpoint knows, written and rotated while the agent was down (read from 0).
   */
  kind: "rename" | "copy" | "unseen";
  /** Where reading starts, and the content mark that matched (the reader keeps it as its own). */
  at?: { offset: number; part: number; mark: ContentMark };
  /** copy: the checkpointed input whose content it copies. */
  copyOf?: string;
}

/** What the tailer knows when it looks for rotated files. */
export interface RotatedLookup {
  /** Inputs as checkpointed when the agent started (before the first scan changed anything). */
  inputsAtStart: Readonly<Record<string, InputState>>;
  /** Inodes open now or finished (never adopted again). */
  taken: (id: string) => boolean;
  /** Inputs resumed at start with matching first bytes: their file was not truncated (a copy of it waits). */
  resumed: ReadonlySet<string>;
  /** When this container instance's lines became ours (older rotated files are not ours to read). */
  ownedSince: number | undefined;
}

/**
 * After a restart: rotated files of known streams, oldest first, each classified by what identifies the same
 * content (see same-content.ts). A file is adopted only for what was not delivered yet.
 */
export async function findRotatedAtStart(
  streamPaths: Iterable<string>,
  current: ReadonlySet<string>,
  look: RotatedLookup,
): Promise<RotatedFile[]> {
  const byDir = new Map<string, string[]>();
  for (const sp of streamPaths) {
    const dir = join(sp, "..");
    const list = byDir.get(dir) ?? [];
    if (!list.includes(sp)) list.push(sp);
    byDir.set(dir, list);
  }
  const found: RotatedFile[] = [];
  for (const [dir, streams] of byDir) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(dir, name);
      if (current.has(path)) continue;
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile()) continue;
      const id = idOf(st);
      if (look.taken(id)) continue;
      const f = await classify(path, id, st, name, streams, look);
      if (f) found.push(f);
    }
  }
  return found.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs);
}

async function classify(
  path: string,
  id: string,
  st: Stats,
  name: string,
  streams: string[],
  look: RotatedLookup,
): Promise<RotatedFile | undefined> {
  const fh = await open(path, "r").catch(() => undefined);
  if (!fh) return undefined;
  try {
    const cp = look.inputsAtStart[id];
    if (cp && (await startsWith(fh, st.size, cp))) {
      if (cp.finished) return undefined; // read to its end before: never again
      return {
        path,
        id,
        st,
        streamPath: cp.path,
        kind: "rename",
        at: { offset: cp.offset, part: cp.part, mark: cp },
      };
    }
    // Not the checkpointed inode (or its number was reused by another file): a rotated name of a stream?
    const streamPath = streams.find((sp) => isRotatedName(name, basename(sp)));
    if (!streamPath) return undefined;
    for (const [inputId, input] of Object.entries(look.inputsAtStart)) {
      if (input.path !== streamPath || input.finished || inputId === id || !input.fpLen) continue;
      if (!(await startsWith(fh, st.size, input))) continue;
      // A copy of a file still untruncated and read on (maybe still being copied, shorter than what we
      // read): the truncation, when seen, adopts it.
      if (look.resumed.has(inputId)) return undefined;
      // The same content: read only past what was handed on (a copy shorter than that holds nothing new).
      return {
        path,
        id,
        st,
        streamPath,
        kind: "copy",
        at: { offset: input.offset, part: input.part, mark: input },
        copyOf: inputId,
      };
    }
    if (look.ownedSince === undefined || st.mtimeMs < look.ownedSince) return undefined;
    // Too short yet to match a mark (< 256 bytes) and the start of the stream's current file: a copy still being
    // made (the truncation, when seen, adopts it), not new content.
    if (st.size < FINGERPRINT_BYTES && (await isPrefixOf(fh, st.size, streamPath))) return undefined;
    return { path, id, st, streamPath, kind: "unseen" };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Live copytruncate: the copy of a just-truncated file, made before the truncation (logrotate copies, then
 * truncates). Same first bytes as what we read, at least as long as what we handed on; the newest such file.
 */
export async function findCopy(
  filePath: string,
  mark: ContentMark,
  offset: number,
  taken: (id: string) => boolean,
): Promise<{ path: string; id: string; st: Stats } | undefined> {
  if ((mark.fpLen ?? 0) === 0) return undefined;
  const dir = join(filePath, "..");
  const base = basename(filePath);
  const names = await readdir(dir).catch(() => [] as string[]);
  let best: { path: string; id: string; st: Stats } | undefined;
  for (const name of names) {
    if (!isRotatedName(name, base)) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile() || taken(idOf(st))) continue;
    if (best && st.mtimeMs < best.st.mtimeMs) continue;
    const fh = await open(path, "r").catch(() => undefined);
    if (!fh) continue;
    try {
      if (await isCopyOf(fh, st.size, mark, offset)) best = { path, id: idOf(st), st };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }
  return best;
}

/** Rotated files of `filePath` modified at or after `sinceMs` and read by nobody: generations never seen, oldest first. */
export async function findNewerCopies(
  filePath: string,
  sinceMs: number,
  taken: (id: string) => boolean,
): Promise<Array<{ path: string; id: string; st: Stats }>> {
  const dir = join(filePath, "..");
  const base = basename(filePath);
  const out: Array<{ path: string; id: string; st: Stats }> = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!isRotatedName(name, base)) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile() || st.mtimeMs < sinceMs || taken(idOf(st))) continue;
    // A copy of what the file holds now (copied, not truncated yet): that truncation adopts it.
    const fh = await open(path, "r").catch(() => undefined);
    if (!fh) continue;
    const current = await isPrefixOf(fh, Math.min(st.size, FINGERPRINT_BYTES), filePath).finally(() =>
      fh.close().catch(() => undefined),
    );
    if (!current) out.push({ path, id: idOf(st), st });
  }
  return out.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs);
}

/** The file identities (device + inode) now in these folders (not recursive). */
export async function fileIdsIn(folders: Iterable<string>): Promise<Set<string>> {
  const seen = new Set<string>();
  for (const dir of folders) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st?.isFile()) seen.add(idOf(st));
    }
  }
  return seen;
}
