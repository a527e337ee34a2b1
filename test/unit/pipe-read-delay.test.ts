import { describe, expect, it } from "vitest";
import { nextReadDelay, SMALL_CHUNK } from "../../src/sources/pipe-read-delay.js";

/**
 * `exec --read-delay` pauses reading the child's pipe after a quiet read. A fixed pause let a fast child fill
 * its 64 KiB pipe and block (at 20,000 lines/s of 100 bytes, 25 ms pauses delivered a third of the lines:
 * bench/results/cpu-per-line-2026-12-04T20-*.json), so the pause adapts to what piled up during the last one.
 */
describe("the pipe read delay", () => {
  it("shrinks when a pause let more than a quarter of a pipe pile up, so the pipe never fills", () => {
    // 2 MB/s: 25 ms piles up ~50 KB
    const d = nextReadDelay(25, 50_000, 25);
    expect(d).toBeLessThan(25);
    expect((d / 25) * 50_000).toBeLessThanOrEqual(SMALL_CHUNK); // the next pause piles up at most 16 KiB
    // and stays there while the rate holds
    expect(nextReadDelay(d, SMALL_CHUNK, 25)).toBe(d);
  });

  it("is never below 1 ms, even for a child writing faster than any pause allows", () => {
    expect(nextReadDelay(1, 1_000_000, 25)).toBe(1);
  });

  it("grows back to the configured delay, never past it, while the child is quiet", () => {
    let d = nextReadDelay(25, 60_000, 25);
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      d = nextReadDelay(d, 500, 25);
      seen.push(d);
    }
    expect(seen.at(-1)).toBe(25);
    expect(Math.max(...seen)).toBe(25);
    expect(nextReadDelay(25, 0, 25)).toBe(25);
  });
});
