import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname, relative, resolve, sep } from "node:path";
import { ERR_SYMLINK_REFUSED, type IkontainerError } from "./errors.js";

/**
 * File operations for the places the agent WRITES (state dir, file-sink outputs): no symlink is followed
 * (O_NOFOLLOW, lstat), and what is created gets an explicit mode whatever the umask (fchmod/chmod after create).
 * A link planted there by someone who can write the folder makes the operation fail with
 * IKON_ERR_SYMLINK_REFUSED instead of writing, creating or truncating a file elsewhere.
 */

/** Modes of what the agent creates: state is private; outputs are readable by the group (log shippers). */
export const STATE_DIR_MODE = 0o700;
export const STATE_FILE_MODE = 0o600;
export const OUTPUT_DIR_MODE = 0o750;
export const OUTPUT_FILE_MODE = 0o640;

const { O_NOFOLLOW, O_CREAT, O_EXCL, O_RDONLY, O_WRONLY, O_APPEND, O_RDWR } = constants;

export function symlinkRefused(path: string, cause?: unknown): IkontainerError {
  return ERR_SYMLINK_REFUSED(
    `${path} is a symbolic link; the agent follows no link where it writes: remove it (or point the setting at the real path)`,
    cause,
  );
}

function isLoop(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === "ELOOP";
}

/**
 * Makes `dir` and any missing parents with `mode` (chmod after mkdir, so the umask does not matter). Existing
 * folders keep their mode. Returns whether `dir` was created.
 */
export function mkdirWithMode(dir: string, mode: number): boolean {
  const first = mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return false;
  // Every folder from the first created one down to `dir` is ours.
  let p = resolve(dir);
  const top = resolve(first);
  for (;;) {
    chmodSync(p, mode);
    if (p === top || p === dirname(p)) break;
    p = dirname(p);
  }
  return true;
}

/**
 * Makes the folders between `base` (trusted, as configured) and `dir`, refusing any component that is a symlink.
 * `dir` must be inside `base`.
 */
export function mkdirInside(base: string, dir: string, mode: number): void {
  const rel = relative(base, dir);
  if (rel === "") return;
  let p = base;
  for (const part of rel.split(sep)) {
    p = `${p}${sep}${part}`;
    let st: ReturnType<typeof lstatSync> | undefined;
    try {
      st = lstatSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (!st) {
      try {
        mkdirSync(p, { mode });
        chmodSync(p, mode);
        continue;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        st = lstatSync(p);
      }
    }
    if (st.isSymbolicLink()) throw symlinkRefused(p);
  }
}

/**
 * Opens without following a final symlink. `flags`: "r" (read), "a" (append), "a+" (append and read), "r+"
 * (read/write); all but "r" create a missing file, which then gets exactly `mode`.
 */
export function openNoFollow(path: string, flags: "r" | "a" | "a+" | "r+", mode = STATE_FILE_MODE): number {
  const base = {
    r: O_RDONLY,
    a: O_WRONLY | O_APPEND,
    "a+": O_RDWR | O_APPEND,
    "r+": O_RDWR,
  }[flags];
  try {
    if (flags === "r") return openSync(path, base | O_NOFOLLOW);
    try {
      const fd = openSync(path, base | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
      fchmodSync(fd, mode);
      return fd;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      return openSync(path, base | O_NOFOLLOW);
    }
  } catch (e) {
    if (isLoop(e)) throw symlinkRefused(path, e);
    throw e;
  }
}

/** Reads a whole file without following a symlink (undefined when it does not exist). */
export function readFileNoFollow(path: string): string | undefined {
  let fd: number;
  try {
    fd = openNoFollow(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Atomic replace: a fresh temp file (a link or leftover at the temp name is removed, never written through),
 * then rename over `path` (rename replaces a link itself, not its target).
 */
export function writeFileAtomic(
  path: string,
  data: string,
  opts: { tmp?: string; mode?: number; fsync?: boolean } = {},
): void {
  const tmp = opts.tmp ?? `${path}.tmp`;
  const mode = opts.mode ?? STATE_FILE_MODE;
  writeFileExclusive(tmp, data, mode, opts.fsync ?? false);
  renameSync(tmp, path);
}

/** Creates `path` anew (removing what is there: a link is removed, not followed) and writes `data`. */
export function writeFileExclusive(path: string, data: string, mode: number, fsync = false): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  } catch (e) {
    // Someone put something there again between unlink and open: refuse rather than follow it.
    if (isLoop(e) || (e as NodeJS.ErrnoException).code === "EEXIST") throw symlinkRefused(path, e);
    throw e;
  }
  try {
    fchmodSync(fd, mode);
    const b = Buffer.from(data);
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** `openNoFollow(path, "r+", mode)` as a FileHandle (the file sink): read/write, created with exactly `mode`. */
export async function openReadWriteNoFollow(path: string, mode: number): Promise<FileHandle> {
  try {
    try {
      const fh = await open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
      await fh.chmod(mode);
      return fh;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      return await open(path, O_RDWR | O_NOFOLLOW);
    }
  } catch (e) {
    if (isLoop(e)) throw symlinkRefused(path, e);
    throw e;
  }
}
