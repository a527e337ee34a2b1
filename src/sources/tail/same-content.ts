import { type FileHandle, open } from "node:fs/promises";
import { fingerprint } from "./file-reader.js";

/**
 * What identifies "the same content" across inodes and restarts: the digest of a file's first `fpLen` bytes
 * (up to 256, as far as the file had them when the checkpoint was taken), plus a length that covers the
 * checkpointed offset. Limits: files whose first bytes are identical (same banner, same first lines) look alike,
 * and a file shorter than the recorded `fpLen` never matches.
 */
export interface ContentMark {
  fp?: string | undefined;
  fpLen?: number | undefined;
}

/** True when the first `mark.fpLen` bytes of `fh` hash to `mark.fp` (an empty mark matches only an empty file). */
export async function startsWith(fh: FileHandle, size: number, mark: ContentMark): Promise<boolean> {
  const len = mark.fpLen ?? 0;
  if (len === 0) return size === 0;
  if (size < len || !mark.fp) return false;
  const buf = Buffer.alloc(len);
  const { bytesRead } = await fh.read(buf, 0, len, 0);
  return bytesRead === len && fingerprint(buf) === mark.fp;
}

/** A copy of content we read up to `offset`: same first bytes, and long enough to hold everything we read. */
export async function isCopyOf(
  fh: FileHandle,
  size: number,
  mark: ContentMark,
  offset: number,
): Promise<boolean> {
  return (mark.fpLen ?? 0) > 0 && size >= offset && (await startsWith(fh, size, mark));
}

/**
 * True when the first `len` bytes of `fh` (at most 256) are the first bytes of the file at `otherPath` now: a
 * rotated file still being copied from it, or a copy made before its truncation. An empty file is a prefix of
 * every file.
 */
export async function isPrefixOf(fh: FileHandle, len: number, otherPath: string): Promise<boolean> {
  const n = Math.min(len, 256);
  if (n === 0) return true;
  const other = await open(otherPath, "r").catch(() => undefined);
  if (!other) return false;
  try {
    const a = Buffer.alloc(n);
    const b = Buffer.alloc(n);
    const [ra, rb] = await Promise.all([fh.read(a, 0, n, 0), other.read(b, 0, n, 0)]);
    return ra.bytesRead === n && rb.bytesRead === n && a.equals(b);
  } finally {
    await other.close().catch(() => undefined);
  }
}

/** Rotated names of `base` (logrotate `app.log.1`, dateext `app.log-20240101`, kubelet `0.log.<time>`), uncompressed. */
export function isRotatedName(name: string, base: string): boolean {
  return (
    name.length > base.length + 1 &&
    name.startsWith(base) &&
    (name[base.length] === "." || name[base.length] === "-") &&
    !/\.(gz|bz2|xz|zst|zip|lz4)$/.test(name)
  );
}
