/**
 * The pause after a quiet read of a child's pipe (`exec --read-delay`), adapted to how fast the child writes.
 *
 * While the pipe is not read, the child's lines pile up in it, and a full pipe (64 KiB on Linux) blocks the
 * child's next write: the application itself would slow down. So the pause shrinks when the read after it
 * found a lot waiting (aiming at a quarter of the pipe per pause), and grows back to the configured delay
 * while the child is quiet. At low rates it is the configured delay (few wake-ups); at high rates it never lets
 * the pipe fill.
 */

/** A read smaller than this is a quiet moment, after which the read delay applies; also the target pile-up. */
export const SMALL_CHUNK = 16 * 1024;

/**
 * The next pause, from the current one and the bytes the first read after it found.
 * `maxMs` is the configured `--read-delay`.
 */
export function nextReadDelay(currentMs: number, bytesAfterPause: number, maxMs: number): number {
  if (bytesAfterPause >= SMALL_CHUNK)
    return Math.max(1, Math.floor((currentMs * SMALL_CHUNK) / bytesAfterPause));
  return Math.min(maxMs, Math.max(1, currentMs * 2));
}
